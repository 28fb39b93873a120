//! What a request's `Range` asks of a file of `len` bytes (RFC 9110 §14).

use std::ops::RangeInclusive;

/// Most ranges one request may ask for (more are refused, not served as many parts).
pub const MAX_RANGES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No (usable) Range: the whole file, 200.
    Full,
    /// 206 with these ranges: one is a plain partial response, several a
    /// multipart/byteranges one.
    Parts(Vec<RangeInclusive<u64>>),
    /// 416: nothing of the file is asked for, or the header is malformed.
    Unsatisfiable,
}

/// The plan for `header` (the Range value, if any) over `len` bytes.
///
/// Parsed here rather than with http-range-header 0.4, which refuses a suffix longer
/// than the file (RFC 9110 §14.1.2: it means the whole file) and answers a range over
/// an empty file with byte 0.
pub fn plan(header: Option<&str>, len: u64) -> Plan {
    let Some(h) = header else {
        return Plan::Full;
    };
    // Another unit than bytes: ignored, as the RFC says.
    let Some(specs) = h.trim().strip_prefix("bytes=") else {
        return Plan::Full;
    };
    let mut out: Vec<RangeInclusive<u64>> = Vec::new();
    for spec in specs.split(',') {
        if out.len() >= MAX_RANGES {
            return Plan::Unsatisfiable;
        }
        let Some((a, b)) = spec.trim().split_once('-') else {
            return Plan::Unsatisfiable;
        };
        let num = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let r = match (a.is_empty(), b.is_empty()) {
            // bytes=-N: the last N bytes.
            (true, false) => match num(b) {
                Some(n) if n > 0 && len > 0 => len.saturating_sub(n)..=len - 1,
                _ => return Plan::Unsatisfiable,
            },
            // bytes=A-: from A to the end.
            (false, true) => match num(a) {
                Some(a) if a < len => a..=len - 1,
                _ => return Plan::Unsatisfiable,
            },
            (false, false) => match (num(a), num(b)) {
                (Some(a), Some(b)) if a <= b && a < len => a..=b.min(len - 1),
                _ => return Plan::Unsatisfiable,
            },
            (true, true) => return Plan::Unsatisfiable,
        };
        // Overlapping ranges are a known way to make a server send a file many times.
        if out
            .iter()
            .any(|o| r.start() <= o.end() && o.start() <= r.end())
        {
            return Plan::Unsatisfiable;
        }
        out.push(r);
    }
    if out.is_empty() {
        Plan::Unsatisfiable
    } else {
        Plan::Parts(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_usual_shapes() {
        assert_eq!(plan(None, 100), Plan::Full);
        assert_eq!(plan(Some("bytes=0-9"), 100), Plan::Parts(vec![0..=9]));
        assert_eq!(plan(Some("bytes=90-"), 100), Plan::Parts(vec![90..=99]));
        assert_eq!(plan(Some("bytes=-10"), 100), Plan::Parts(vec![90..=99]));
        assert_eq!(
            plan(Some("bytes=-1000"), 100),
            Plan::Parts(vec![0..=99]),
            "a suffix longer than the file is all of it"
        );
        assert_eq!(
            plan(Some("bytes=50-1000"), 100),
            Plan::Parts(vec![50..=99]),
            "an end past the file is clipped"
        );
        assert_eq!(
            plan(Some("bytes=0-1,5-6"), 100),
            Plan::Parts(vec![0..=1, 5..=6])
        );
        assert_eq!(plan(Some("items=0-5"), 100), Plan::Full);
    }

    #[test]
    fn unsatisfiable_and_absurd() {
        for h in [
            "bytes=100-",
            "bytes=200-300",
            "bytes=5-2",
            "bytes=-0",
            "bytes=abc",
            "bytes=",
            "bytes=99999999999999999999999999-",
            "bytes=0-5,3-8",
        ] {
            assert_eq!(plan(Some(h), 100), Plan::Unsatisfiable, "{h}");
        }
        assert_eq!(
            plan(Some("bytes=0-"), 0),
            Plan::Unsatisfiable,
            "an empty file has no bytes to range over"
        );
        let many: Vec<String> = (0..20).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        assert_eq!(
            plan(Some(&format!("bytes={}", many.join(","))), 100),
            Plan::Unsatisfiable
        );
    }

    proptest! {
        #[test]
        fn any_header_gives_ranges_inside_the_file(h in ".{0,64}", len in 0u64..10_000) {
            if let Plan::Parts(rs) = plan(Some(&h), len) {
                prop_assert!(!rs.is_empty() && rs.len() <= MAX_RANGES);
                for r in rs {
                    prop_assert!(r.start() <= r.end() && *r.end() < len);
                }
            }
        }

        #[test]
        fn numeric_ranges_agree_with_arithmetic(a in 0u64..300, b in 0u64..300, len in 1u64..200) {
            let got = plan(Some(&format!("bytes={a}-{b}")), len);
            if a <= b && a < len {
                prop_assert_eq!(got, Plan::Parts(vec![a..=b.min(len - 1)]));
            } else {
                prop_assert_eq!(got, Plan::Unsatisfiable);
            }
        }
    }
}
