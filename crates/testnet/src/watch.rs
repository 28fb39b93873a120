//! Watching a testnet from one node's dashboard: a watcher node outside the testnet's
//! list (so no step picks it, stops it or counts it) joins the network, and every
//! testnet node's events are summed up into the watcher's [`Narration`] as they happen,
//! with the nodes they name. `nodus demo` narrates its steps there too.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use nodus_node::events::EventSource;
use nodus_node::narration::Narration;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// At most one activity per node, source and kind in this long: a download's progress
/// or a busy chain would otherwise crowd out everything else.
const QUIET: Duration = Duration::from_millis(250);
/// Fields shown of an event.
const FIELDS: usize = 6;
/// A field's value is cut to this many characters.
const VALUE_CHARS: usize = 40;

/// Peer ids of the narrated nodes, to name nodes in events by their number.
pub(crate) type Known = Arc<RwLock<Vec<(String, usize)>>>;

/// Sums up node `index`'s events into `narration` until the node's stream ends or the
/// task is aborted (when the node stops).
pub(crate) fn mirror(
    narration: Narration,
    index: usize,
    events: &EventSource,
    known: Known,
) -> JoinHandle<()> {
    let mut stream = events.subscribe();
    tokio::spawn(async move {
        let mut last: HashMap<(&'static str, String), Instant> = HashMap::new();
        while let Some((source, item)) = stream.next().await {
            let Ok(v) = item else { continue };
            let kind = kind_of(&v).unwrap_or(source).to_string();
            let now = Instant::now();
            match last.get(&(source, kind.clone())) {
                Some(t) if now.duration_since(*t) < QUIET => continue,
                _ => {}
            }
            last.insert((source, kind.clone()), now);
            let names = known.read().map(|k| k.clone()).unwrap_or_default();
            let text = v.to_string();
            let with: Vec<usize> = names
                .iter()
                .filter(|(peer, k)| *k != index && text.contains(peer.as_str()))
                .map(|(_, k)| *k)
                .collect();
            narration.activity(index, source, &kind, &summary(&v, &names), with);
        }
    })
}

fn kind_of(v: &Value) -> Option<&str> {
    v.get("type").or_else(|| v.get("kind"))?.as_str()
}

/// A few `key=value` pairs of an event: its scalar fields, one level of nesting
/// included, peer ids of narrated nodes written as `node k`.
pub(crate) fn summary(v: &Value, names: &[(String, usize)]) -> String {
    let mut pairs = Vec::new();
    collect(v, "", names, &mut pairs, 0);
    pairs.join(" ")
}

fn collect(
    v: &Value,
    prefix: &str,
    names: &[(String, usize)],
    out: &mut Vec<String>,
    depth: usize,
) {
    let Value::Object(map) = v else { return };
    for (key, value) in map {
        if out.len() >= FIELDS {
            return;
        }
        if depth == 0 && (key == "type" || key == "kind") {
            continue;
        }
        let shown = match value {
            Value::String(s) => Some(name_or_cut(s, names)),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Object(_) if depth == 0 => {
                collect(value, key, names, out, depth + 1);
                None
            }
            _ => None,
        };
        if let Some(shown) = shown {
            let key = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            out.push(format!("{key}={shown}"));
        }
    }
}

fn name_or_cut(s: &str, names: &[(String, usize)]) -> String {
    if let Some((_, k)) = names.iter().find(|(peer, _)| peer == s) {
        return format!("node {k}");
    }
    if s.chars().count() <= VALUE_CHARS {
        return s.to_string();
    }
    let head: String = s.chars().take(VALUE_CHARS).collect();
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_summary_names_nodes_and_keeps_it_short() {
        let names = vec![("12D3KooWabc".to_string(), 3)];
        let v = json!({
            "type": "state",
            "to": "12D3KooWabc",
            "state": "delivered",
            "message": {"text": "x".repeat(100), "seq": 4, "files": []},
        });
        let s = summary(&v, &names);
        assert!(s.contains("to=node 3"), "{s}");
        assert!(s.contains("state=delivered"), "{s}");
        assert!(s.contains("message.seq=4"), "{s}");
        assert!(
            s.contains(&format!("message.text={}…", "x".repeat(VALUE_CHARS))),
            "{s}"
        );
        assert!(!s.contains("type="), "{s}");
        let many: serde_json::Map<String, Value> =
            (0..20).map(|i| (format!("f{i:02}"), json!(i))).collect();
        assert_eq!(
            summary(&Value::Object(many), &names).split(' ').count(),
            FIELDS
        );
    }
}
