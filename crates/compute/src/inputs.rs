//! How a project's inputs become work units: one unit per integer of a range, per line
//! of a file, or per file of a directory.
//!
//! - `Range { from, to }` (`A..B`, B excluded): the unit's argv is `[n, extra..]`.
//! - `Lines`: argv is the line's words then `extra`; stdin is the line.
//! - `Files`: argv is `[name, extra..]`; the file is both stdin and an input file of
//!   that name.

use serde::{Deserialize, Serialize};

use crate::job::Job;

/// Most units one project may have.
pub const MAX_UNITS: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inputs {
    Range { from: u64, to: u64 },
    Lines(Vec<String>),
    Files(Vec<(String, Vec<u8>)>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputsError {
    #[error("no work units: the inputs are empty")]
    Empty,
    #[error("{0} work units; at most {MAX_UNITS} in one project")]
    TooMany(u64),
    #[error("`{0}` is not a range: write A..B, as 0..200 (B is not included)")]
    BadRange(String),
}

impl Inputs {
    /// Parses `A..B`.
    pub fn range(s: &str) -> Result<Inputs, InputsError> {
        let bad = || InputsError::BadRange(s.to_string());
        let (a, b) = s.split_once("..").ok_or_else(bad)?;
        let from = a.trim().parse().map_err(|_| bad())?;
        let to = b.trim().parse().map_err(|_| bad())?;
        if to <= from {
            return Err(bad());
        }
        Ok(Inputs::Range { from, to })
    }

    pub fn len(&self) -> u64 {
        match self {
            Inputs::Range { from, to } => to.saturating_sub(*from),
            Inputs::Lines(l) => l.len() as u64,
            Inputs::Files(f) => f.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The units, in order.
    pub fn jobs(&self, extra: &[String]) -> Result<Vec<Job>, InputsError> {
        let n = self.len();
        if n == 0 {
            return Err(InputsError::Empty);
        }
        if n > MAX_UNITS as u64 {
            return Err(InputsError::TooMany(n));
        }
        let with = |mut args: Vec<String>| {
            args.extend(extra.iter().cloned());
            args
        };
        Ok(match self {
            Inputs::Range { from, to } => (*from..*to)
                .map(|i| Job {
                    args: with(vec![i.to_string()]),
                    ..Job::default()
                })
                .collect(),
            Inputs::Lines(lines) => lines
                .iter()
                .map(|l| Job {
                    args: with(l.split_whitespace().map(str::to_string).collect()),
                    stdin: format!("{l}\n").into_bytes(),
                    ..Job::default()
                })
                .collect(),
            Inputs::Files(files) => files
                .iter()
                .map(|(name, data)| Job {
                    args: with(vec![name.clone()]),
                    stdin: data.clone(),
                    files: vec![(name.clone(), data.clone())],
                    ..Job::default()
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_lines_and_files_make_units() {
        let r = Inputs::range("3..6").unwrap();
        let jobs = r.jobs(&["100".into()]).unwrap();
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs[0].args, vec!["3", "100"]);
        assert!(Inputs::range("6..3").is_err());
        assert!(Inputs::range("x").is_err());
        let l = Inputs::Lines(vec!["7 13".into()]).jobs(&[]).unwrap();
        assert_eq!(l[0].args, vec!["7", "13"]);
        assert_eq!(l[0].stdin, b"7 13\n");
        let f = Inputs::Files(vec![("a.txt".into(), b"hi".to_vec())])
            .jobs(&[])
            .unwrap();
        assert_eq!(f[0].files, vec![("a.txt".to_string(), b"hi".to_vec())]);
        assert_eq!(
            Inputs::Range {
                from: 0,
                to: 2_000_000
            }
            .jobs(&[]),
            Err(InputsError::TooMany(2_000_000))
        );
        assert_eq!(Inputs::Lines(vec![]).jobs(&[]), Err(InputsError::Empty));
    }
}
