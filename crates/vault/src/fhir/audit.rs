//! The audit trail's entries as FHIR R4 AuditEvent resources.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Import,
    Grant,
    Revoke,
    Fetch,
    Append,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Import => "import",
            Action::Grant => "grant",
            Action::Revoke => "revoke",
            Action::Fetch => "fetch",
            Action::Append => "append",
        }
    }

    /// AuditEvent.action: Create, Read, Update, Execute.
    fn code(self) -> &'static str {
        match self {
            Action::Import | Action::Append => "C",
            Action::Fetch => "R",
            Action::Grant | Action::Revoke => "U",
        }
    }
}

/// One entry's facts.
#[derive(Debug, Clone)]
pub struct Audit {
    pub action: Action,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who asked: a peer id.
    pub who: String,
    /// The node that recorded it.
    pub observer: String,
    /// Records concerned, as `Type/id`.
    pub records: Vec<String>,
    /// Words for a person: which types a grant covers, why a fetch was refused.
    pub detail: String,
    pub refused: bool,
}

const PEER: &str = "urn:nodus:peer";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const ACTIONS: &str = "urn:nodus:vault:action";

/// `ms` since the epoch as a FHIR instant (RFC 3339, UTC).
pub fn instant(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// The AuditEvent for entry `seq`.
pub fn event(seq: u64, a: &Audit) -> Value {
    let (code, display) = match a.action {
        Action::Grant | Action::Revoke => ("110136", "Security Roles Changed"),
        _ => ("110110", "Patient Record"),
    };
    let recorded = instant(a.at_ms);
    let mut e = json!({
        "resourceType": "AuditEvent",
        "id": seq.to_string(),
        "type": {"system": DCM, "code": code, "display": display},
        "subtype": [{"system": ACTIONS, "code": a.action.name()}],
        "action": a.action.code(),
        "recorded": recorded,
        "outcome": if a.refused { "4" } else { "0" },
        "agent": [{
            "who": {"identifier": {"system": PEER, "value": a.who}},
            "requestor": true
        }],
        "source": {"observer": {"identifier": {"system": PEER, "value": a.observer}}}
    });
    if !a.detail.is_empty() {
        e["outcomeDesc"] = json!(a.detail);
    }
    if !a.records.is_empty() {
        e["entity"] = a
            .records
            .iter()
            .map(|r| json!({"what": {"reference": r}}))
            .collect();
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_entry_is_a_valid_audit_event() {
        for action in [
            Action::Import,
            Action::Grant,
            Action::Revoke,
            Action::Fetch,
            Action::Append,
        ] {
            for records in [vec![], vec!["Observation/a".to_string()]] {
                let e = event(
                    7,
                    &Audit {
                        action,
                        at_ms: 1_780_000_000_123,
                        who: "12D3KooW".into(),
                        observer: "12D3KooX".into(),
                        records,
                        detail: "types Observation".into(),
                        refused: action == Action::Fetch,
                    },
                );
                crate::fhir::validate::resource(&e, "AuditEvent").unwrap();
                assert_eq!(e["recorded"], "2026-05-28T20:26:40.123Z");
            }
        }
    }
}
