//! What every command shares, and calls nothing back out of the rest of the binary:
//! tables and JSON output (here), progress and demo steps ([`progress`]), logging and
//! signals ([`process`]), live streams ([`follow`]).

pub mod follow;
pub mod process;
pub mod progress;
pub mod stats;

use serde_json::Value;

/// Prints rows as aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for row in rows {
        line(row.clone());
    }
}

/// One row per element of a JSON array (none when it is not one).
pub fn rows(v: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    v.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(row)
        .collect()
}

/// Prints a JSON array as JSON when asked, else as a table of its elements.
pub fn list(as_json: bool, v: &Value, header: &[&str], row: impl Fn(&Value) -> Vec<String>) {
    if as_json {
        json(v);
    } else {
        table(header, &rows(v, row));
    }
}

pub fn json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Percent-encodes a path segment or query value (everything but RFC 3986's unreserved
/// characters).
pub fn enc(s: &str) -> String {
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn enc_escapes_all_but_the_unreserved() {
        assert_eq!(super::enc("a b/c?d=é~_.-"), "a%20b%2Fc%3Fd%3D%C3%A9~_.-");
    }
}
