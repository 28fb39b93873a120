//! DHT record namespaces. A record key is `/<namespace>/<rest>`; each namespace has a
//! validator. Records in unknown namespaces, or refused by their validator, are neither
//! stored nor returned to callers. Services register their namespaces when the node is
//! composed; the overlay itself registers `kv` (free-form values, size-limited).

use std::collections::HashMap;
use std::sync::Arc;

use libp2p::kad::Record;

/// Largest value accepted in any namespace (libp2p's own store limit is 65 KiB).
pub const MAX_VALUE: usize = 60 * 1024;
pub const MAX_KEY: usize = 512;

/// A namespace's check of a record; its error says why (the service's own type).
pub type RecordValidator =
    Arc<dyn Fn(&Record) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send + Sync>;

/// Why a record was refused. Every kind coming from a peer is a strike against it.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("key of {0} bytes, limit {MAX_KEY}")]
    KeyTooLong(usize),
    #[error("value of {0} bytes, limit {MAX_VALUE}")]
    ValueTooLarge(usize),
    #[error("key is not of the form /<namespace>/<name>")]
    BadKey,
    #[error("unknown namespace {0:?}")]
    UnknownNamespace(String),
    #[error("refused by the {namespace} namespace: {source}")]
    Refused {
        namespace: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

#[derive(Clone)]
pub struct Validators {
    by_namespace: HashMap<String, RecordValidator>,
}

impl Default for Validators {
    fn default() -> Self {
        let mut v = Validators {
            by_namespace: HashMap::new(),
        };
        v.register("kv", Arc::new(|_| Ok(())));
        v
    }
}

impl Validators {
    pub fn register(&mut self, namespace: &str, validator: RecordValidator) {
        self.by_namespace.insert(namespace.to_string(), validator);
    }

    /// The namespace of a key: the text between the first two slashes.
    pub fn namespace(key: &[u8]) -> Option<&str> {
        let s = std::str::from_utf8(key).ok()?;
        let rest = s.strip_prefix('/')?;
        let (ns, tail) = rest.split_once('/')?;
        (!ns.is_empty() && !tail.is_empty()).then_some(ns)
    }

    pub fn validate(&self, record: &Record) -> Result<(), RecordError> {
        let key = record.key.as_ref();
        if key.len() > MAX_KEY {
            return Err(RecordError::KeyTooLong(key.len()));
        }
        if record.value.len() > MAX_VALUE {
            return Err(RecordError::ValueTooLarge(record.value.len()));
        }
        let ns = Validators::namespace(key).ok_or(RecordError::BadKey)?;
        let validator = self
            .by_namespace
            .get(ns)
            .ok_or_else(|| RecordError::UnknownNamespace(ns.to_string()))?;
        validator(record).map_err(|source| RecordError::Refused {
            namespace: ns.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::kad::RecordKey;

    fn rec(key: &str, len: usize) -> Record {
        Record::new(RecordKey::new(&key), vec![0u8; len])
    }

    #[test]
    fn namespaces() {
        let v = Validators::default();
        assert!(v.validate(&rec("/kv/hello", 10)).is_ok());
        assert!(matches!(
            v.validate(&rec("/nope/hello", 10)),
            Err(RecordError::UnknownNamespace(ns)) if ns == "nope"
        ));
        assert!(matches!(
            v.validate(&rec("kv/hello", 10)),
            Err(RecordError::BadKey)
        ));
        assert!(matches!(
            v.validate(&rec("/kv/", 10)),
            Err(RecordError::BadKey)
        ));
        assert!(matches!(
            v.validate(&rec("/kv/big", MAX_VALUE + 1)),
            Err(RecordError::ValueTooLarge(_))
        ));
        let long = format!("/kv/{}", "k".repeat(MAX_KEY));
        assert!(matches!(
            v.validate(&rec(&long, 1)),
            Err(RecordError::KeyTooLong(_))
        ));
        let mut strict = Validators::default();
        strict.register("no", Arc::new(|_| Err("never".into())));
        assert!(matches!(
            strict.validate(&rec("/no/x", 1)),
            Err(RecordError::Refused { namespace, .. }) if namespace == "no"
        ));
    }
}
