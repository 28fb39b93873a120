//! REQ filters (NIP-01): which events a subscription wants.

use std::collections::BTreeMap;

use serde::de::{Error, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::event::Event;

/// Values one filter field may list, at most (ids, authors, kinds, each tag).
pub const MAX_VALUES: usize = 1_000;
/// Events a query returns when its filter names no limit, and at most when it does.
pub const DEFAULT_LIMIT: usize = 500;
pub const MAX_LIMIT: usize = 5_000;

/// One filter: every field given must match (AND); a subscription's filters are OR'ed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub ids: Option<Vec<[u8; 32]>>,
    pub authors: Option<Vec<[u8; 32]>>,
    pub kinds: Option<Vec<u16>>,
    /// `#e`, `#p`, `#t`, ...: single-letter tag name to the values wanted.
    pub tags: BTreeMap<char, Vec<String>>,
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub limit: Option<usize>,
    /// NIP-50: every word must appear in the content (case-insensitive).
    pub search: Option<String>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        if self.ids.as_ref().is_some_and(|ids| !ids.contains(&e.id)) {
            return false;
        }
        if self
            .authors
            .as_ref()
            .is_some_and(|a| !a.contains(&e.pubkey))
        {
            return false;
        }
        if self.kinds.as_ref().is_some_and(|k| !k.contains(&e.kind)) {
            return false;
        }
        if self.since.is_some_and(|s| e.created_at < s)
            || self.until.is_some_and(|u| e.created_at > u)
        {
            return false;
        }
        for (name, wanted) in &self.tags {
            let mut buf = [0u8; 4];
            let name: &str = name.encode_utf8(&mut buf);
            let hit = e.tags.iter().any(|t| {
                t.first().is_some_and(|n| n == name) && t.get(1).is_some_and(|v| wanted.contains(v))
            });
            if !hit {
                return false;
            }
        }
        if let Some(q) = &self.search {
            let content = e.content.to_lowercase();
            if !q
                .to_lowercase()
                .split_whitespace()
                .all(|w| content.contains(w))
            {
                return false;
            }
        }
        true
    }

    /// How many events the query returns at most.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Filter, D::Error> {
        d.deserialize_map(FilterVisitor)
    }
}

struct FilterVisitor;

fn hex32s<E: Error>(values: Vec<String>) -> Result<Vec<[u8; 32]>, E> {
    values
        .iter()
        .map(|v| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(v, &mut out)
                .map_err(|_| E::custom("ids and authors are 64 lowercase hex characters"))?;
            Ok(out)
        })
        .collect()
}

fn bounded<E: Error, T>(v: Vec<T>) -> Result<Vec<T>, E> {
    if v.len() > MAX_VALUES {
        return Err(E::custom(format!(
            "more than {MAX_VALUES} values in one field"
        )));
    }
    Ok(v)
}

impl<'de> Visitor<'de> for FilterVisitor {
    type Value = Filter;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a filter object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Filter, A::Error> {
        let mut f = Filter::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "ids" => f.ids = Some(hex32s(bounded(map.next_value()?)?)?),
                "authors" => f.authors = Some(hex32s(bounded(map.next_value()?)?)?),
                "kinds" => f.kinds = Some(bounded(map.next_value()?)?),
                "since" => f.since = Some(map.next_value()?),
                "until" => f.until = Some(map.next_value()?),
                "limit" => f.limit = Some(map.next_value()?),
                "search" => f.search = Some(map.next_value()?),
                k => {
                    let mut chars = k.chars();
                    match (chars.next(), chars.next(), chars.next()) {
                        (Some('#'), Some(c), None) if c.is_ascii_alphabetic() => {
                            f.tags.insert(c, bounded(map.next_value()?)?);
                        }
                        _ => return Err(A::Error::custom(format!("unknown filter field {k:?}"))),
                    }
                }
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Keys;

    #[test]
    fn every_field_narrows() {
        let k = Keys::generate();
        let e = k.sign(
            100,
            1,
            vec![vec!["t".into(), "rust".into()]],
            "Hello Nostr world",
        );
        let m = |json: &str| serde_json::from_str::<Filter>(json).unwrap().matches(&e);
        let author = hex::encode(k.public());
        assert!(m("{}"));
        assert!(m(&format!(r#"{{"authors":["{author}"],"kinds":[1]}}"#)));
        assert!(!m(r#"{"kinds":[0]}"#));
        assert!(m(r##"{"#t":["rust","go"]}"##));
        assert!(!m(r##"{"#t":["go"]}"##));
        assert!(!m(r##"{"#p":["rust"]}"##));
        assert!(m(r#"{"since":100,"until":100}"#));
        assert!(!m(r#"{"since":101}"#));
        assert!(!m(r#"{"until":99}"#));
        assert!(m(r#"{"search":"nostr hello"}"#));
        assert!(!m(r#"{"search":"bye"}"#));
        assert!(m(&format!(r#"{{"ids":["{}"]}}"#, hex::encode(e.id))));
        assert!(!m(&format!(r#"{{"ids":["{}"]}}"#, hex::encode([0u8; 32]))));
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        let err = |json: &str| {
            serde_json::from_str::<Filter>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(err(r#"{"authors":["abc"]}"#).contains("64 lowercase hex"));
        assert!(err(r#"{"colour":1}"#).contains("unknown filter field"));
        let many: Vec<u16> = (0..=MAX_VALUES as u16).collect();
        assert!(err(&format!(r#"{{"kinds":{many:?}}}"#)).contains("more than"));
        assert_eq!(
            serde_json::from_str::<Filter>(r#"{"limit":9999999}"#)
                .unwrap()
                .limit(),
            MAX_LIMIT
        );
    }
}
