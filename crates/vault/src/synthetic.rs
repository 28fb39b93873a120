//! Synthetic patients for tests, the demo and the benchmark; no real patient data
//! anywhere. The fixture is carebundle 0.5's output (`carebundle generate --profile
//! hypertension --count 1 --seed 7`, US Core FHIR R4); copies of it get fresh ids.

/// One synthetic patient, a transaction Bundle.
pub const PATIENT: &[u8] = include_bytes!("../fixtures/hypertension.json");

/// How many resources of `rtype` (all, with None) [`PATIENT`] holds.
pub fn count(rtype: Option<&str>) -> usize {
    let b: serde_json::Value = serde_json::from_slice(PATIENT).expect("the fixture is JSON");
    b["entry"].as_array().map_or(0, |entries| {
        entries
            .iter()
            .filter(|e| rtype.is_none_or(|t| e["resource"]["resourceType"] == t))
            .count()
    })
}

/// Bundles holding about `records` resources in all: copies of the synthetic patient,
/// each with its uuids changed so every copy is a new person.
pub fn copies(records: usize) -> Vec<Vec<u8>> {
    let text = std::str::from_utf8(PATIENT).expect("the fixture is UTF-8");
    let per =
        serde_json::from_slice::<serde_json::Value>(PATIENT).expect("the fixture is JSON")["entry"]
            .as_array()
            .map_or(1, Vec::len);
    (0..records.div_ceil(per))
        .map(|i| renumber(text, i as u32).into_bytes())
        .collect()
}

/// `text` with the first 8 hex digits of every uuid replaced by `i`'s.
fn renumber(text: &str, i: u32) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut k = 0;
    while k + 36 <= b.len() {
        let w = &b[k..k + 36];
        let uuid = w.iter().enumerate().all(|(j, c)| match j {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
        if uuid {
            out.push_str(&text[at..k]);
            out.push_str(&format!("{i:08x}"));
            at = k + 8;
            k += 36;
        } else {
            k += 1;
        }
    }
    out.push_str(&text[at..]);
    out
}
