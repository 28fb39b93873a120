//! What clients send a relay and what it answers (NIP-01, NIP-42 AUTH, NIP-45 COUNT,
//! NIP-77 NEG-OPEN/NEG-MSG/NEG-CLOSE).

use serde_json::{Value, json};

use crate::event::Event;
use crate::filter::Filter;

/// Subscription ids are at most this long (NIP-01).
pub const MAX_SUB_ID: usize = 64;
/// Filters one REQ may carry.
pub const MAX_FILTERS: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Event(Box<Event>),
    Req {
        id: String,
        filters: Vec<Filter>,
    },
    Count {
        id: String,
        filters: Vec<Filter>,
    },
    Close(String),
    /// NIP-42: the client's signed answer to the relay's challenge.
    Auth(Box<Event>),
    /// NIP-77: start reconciling the events matching `filter`.
    NegOpen {
        id: String,
        filter: Box<Filter>,
        msg: Vec<u8>,
    },
    NegMsg {
        id: String,
        msg: Vec<u8>,
    },
    NegClose(String),
}

/// Why a client's frame is not a message. Sent back in a NOTICE (or CLOSED).
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("a message is a JSON array starting with a string")]
    NotAnArray,
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("{kind} takes {expected}")]
    Arity {
        kind: &'static str,
        expected: &'static str,
    },
    #[error("invalid: {0}")]
    BadEvent(#[source] serde_json::Error),
    #[error("subscription ids are 1 to {MAX_SUB_ID} characters")]
    BadSubId,
    #[error("at most {MAX_FILTERS} filters per subscription")]
    TooManyFilters,
    #[error("bad filter: {0}")]
    BadFilter(#[source] serde_json::Error),
    #[error("a negentropy message is a hex string")]
    BadHex,
}

impl ClientMessage {
    pub fn decode(text: &str) -> Result<ClientMessage, MessageError> {
        // The common case, an EVENT, in one pass (no intermediate JSON tree); anything
        // else, or an EVENT that does not decode so, takes the general path, which
        // also names what is wrong.
        if text.trim_start().starts_with("[\"EVENT\"")
            && let Ok((_, e)) = serde_json::from_str::<(String, Event)>(text)
        {
            return Ok(ClientMessage::Event(Box::new(e)));
        }
        let v: Value = serde_json::from_str(text).map_err(MessageError::NotJson)?;
        let Value::Array(mut items) = v else {
            return Err(MessageError::NotAnArray);
        };
        let Some(Value::String(kind)) = items.first().cloned() else {
            return Err(MessageError::NotAnArray);
        };
        match kind.as_str() {
            "EVENT" => {
                if items.len() != 2 {
                    return Err(MessageError::Arity {
                        kind: "EVENT",
                        expected: "one event",
                    });
                }
                let e: Event =
                    serde_json::from_value(items.swap_remove(1)).map_err(MessageError::BadEvent)?;
                Ok(ClientMessage::Event(Box::new(e)))
            }
            "REQ" | "COUNT" => {
                let kind: &'static str = if kind == "REQ" { "REQ" } else { "COUNT" };
                if items.len() < 3 {
                    return Err(MessageError::Arity {
                        kind,
                        expected: "a subscription id and at least one filter",
                    });
                }
                let id = sub_id(&items[1])?;
                if items.len() - 2 > MAX_FILTERS {
                    return Err(MessageError::TooManyFilters);
                }
                let filters = items
                    .drain(2..)
                    .map(serde_json::from_value::<Filter>)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(MessageError::BadFilter)?;
                Ok(if kind == "REQ" {
                    ClientMessage::Req { id, filters }
                } else {
                    ClientMessage::Count { id, filters }
                })
            }
            "CLOSE" => {
                if items.len() != 2 {
                    return Err(MessageError::Arity {
                        kind: "CLOSE",
                        expected: "a subscription id",
                    });
                }
                Ok(ClientMessage::Close(sub_id(&items[1])?))
            }
            "AUTH" => {
                if items.len() != 2 {
                    return Err(MessageError::Arity {
                        kind: "AUTH",
                        expected: "one event",
                    });
                }
                let e: Event =
                    serde_json::from_value(items.swap_remove(1)).map_err(MessageError::BadEvent)?;
                Ok(ClientMessage::Auth(Box::new(e)))
            }
            "NEG-OPEN" => {
                if items.len() != 4 {
                    return Err(MessageError::Arity {
                        kind: "NEG-OPEN",
                        expected: "a subscription id, a filter and a message",
                    });
                }
                let id = sub_id(&items[1])?;
                let msg = hex_msg(&items[3])?;
                let filter = serde_json::from_value::<Filter>(items.swap_remove(2))
                    .map_err(MessageError::BadFilter)?;
                Ok(ClientMessage::NegOpen {
                    id,
                    filter: Box::new(filter),
                    msg,
                })
            }
            "NEG-MSG" => {
                if items.len() != 3 {
                    return Err(MessageError::Arity {
                        kind: "NEG-MSG",
                        expected: "a subscription id and a message",
                    });
                }
                Ok(ClientMessage::NegMsg {
                    id: sub_id(&items[1])?,
                    msg: hex_msg(&items[2])?,
                })
            }
            "NEG-CLOSE" => {
                if items.len() != 2 {
                    return Err(MessageError::Arity {
                        kind: "NEG-CLOSE",
                        expected: "a subscription id",
                    });
                }
                Ok(ClientMessage::NegClose(sub_id(&items[1])?))
            }
            _ => Err(MessageError::UnknownType(kind.chars().take(32).collect())),
        }
    }
}

fn hex_msg(v: &Value) -> Result<Vec<u8>, MessageError> {
    v.as_str()
        .and_then(|s| hex::decode(s).ok())
        .ok_or(MessageError::BadHex)
}

fn sub_id(v: &Value) -> Result<String, MessageError> {
    match v {
        Value::String(s) if !s.is_empty() && s.chars().count() <= MAX_SUB_ID => Ok(s.clone()),
        _ => Err(MessageError::BadSubId),
    }
}

/// Frames a relay sends.
pub mod relay {
    use super::*;

    pub fn event(sub: &str, event_json: &str) -> String {
        // The stored JSON is spliced in, not re-serialized: a query of thousands of
        // events costs no re-encoding.
        format!("[\"EVENT\",{},{event_json}]", json!(sub))
    }

    pub fn ok(id: &[u8; 32], accepted: bool, message: &str) -> String {
        // One per EVENT: written directly rather than through a JSON tree.
        format!(
            "[\"OK\",\"{}\",{accepted},{}]",
            hex::encode(id),
            json!(message)
        )
    }

    pub fn eose(sub: &str) -> String {
        json!(["EOSE", sub]).to_string()
    }

    pub fn closed(sub: &str, message: &str) -> String {
        json!(["CLOSED", sub, message]).to_string()
    }

    pub fn notice(message: &str) -> String {
        json!(["NOTICE", message]).to_string()
    }

    pub fn count(sub: &str, n: usize) -> String {
        json!(["COUNT", sub, {"count": n}]).to_string()
    }

    pub fn auth(challenge: &str) -> String {
        json!(["AUTH", challenge]).to_string()
    }

    pub fn neg_msg(sub: &str, msg: &[u8]) -> String {
        json!(["NEG-MSG", sub, hex::encode(msg)]).to_string()
    }

    pub fn neg_err(sub: &str, reason: &str) -> String {
        json!(["NEG-ERR", sub, reason]).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Keys;

    #[test]
    fn client_messages_decode() {
        let e = Keys::generate().sign(5, 1, vec![], "x");
        let m = ClientMessage::decode(&format!(r#"["EVENT",{}]"#, e.to_json())).unwrap();
        assert_eq!(m, ClientMessage::Event(Box::new(e.clone())));
        let m = ClientMessage::decode(r#"["REQ","s1",{"kinds":[1]},{"limit":3}]"#).unwrap();
        let ClientMessage::Req { id, filters } = m else {
            panic!("{m:?}")
        };
        assert_eq!((id.as_str(), filters.len()), ("s1", 2));
        assert_eq!(
            ClientMessage::decode(r#"["CLOSE","s1"]"#).unwrap(),
            ClientMessage::Close("s1".into())
        );
        let m = ClientMessage::decode(r#"["NEG-OPEN","n",{"kinds":[1]},"6100"]"#).unwrap();
        assert!(
            matches!(m, ClientMessage::NegOpen { id, msg, .. } if id == "n" && msg == vec![0x61, 0])
        );
        assert_eq!(
            ClientMessage::decode(r#"["NEG-MSG","n","61"]"#).unwrap(),
            ClientMessage::NegMsg {
                id: "n".into(),
                msg: vec![0x61]
            }
        );
        assert_eq!(
            ClientMessage::decode(r#"["NEG-CLOSE","n"]"#).unwrap(),
            ClientMessage::NegClose("n".into())
        );
        let m = ClientMessage::decode(&format!(r#"["AUTH",{}]"#, e.to_json())).unwrap();
        assert_eq!(m, ClientMessage::Auth(Box::new(e)));
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        let err = |t: &str| ClientMessage::decode(t).unwrap_err();
        assert!(matches!(err("nope"), MessageError::NotJson(_)));
        assert!(matches!(err("{}"), MessageError::NotAnArray));
        assert!(matches!(err("[1]"), MessageError::NotAnArray));
        assert!(matches!(err(r#"["AUTHX"]"#), MessageError::UnknownType(t) if t == "AUTHX"));
        assert!(matches!(
            err(r#"["NEG-MSG","s","zz"]"#),
            MessageError::BadHex
        ));
        assert!(matches!(
            err(r#"["NEG-OPEN","s",{}]"#),
            MessageError::Arity { .. }
        ));
        assert!(matches!(err(r#"["AUTH",{}]"#), MessageError::BadEvent(_)));
        assert!(matches!(err(r#"["REQ","s"]"#), MessageError::Arity { .. }));
        assert!(matches!(err(r#"["REQ","",{}]"#), MessageError::BadSubId));
        assert!(matches!(
            err(&format!(r#"["REQ","{}",{{}}]"#, "x".repeat(65))),
            MessageError::BadSubId
        ));
        let many = ["{}"; MAX_FILTERS + 1].join(",");
        assert!(matches!(
            err(&format!(r#"["REQ","s",{many}]"#)),
            MessageError::TooManyFilters
        ));
        assert!(matches!(
            err(r#"["EVENT",{"id":"zz"}]"#),
            MessageError::BadEvent(_)
        ));
    }
}
