//! Every row of the twelve official aserti3-2d runs (copied from ../shared/vectors/asert).

use alloy_primitives::U256;
use nodus_chain::asert::{AsertAnchor, AsertParams, next_bits};

/// The value of the first `## <name>` header line among `names` (the files spell the
/// anchor's parent time two ways).
fn field<'a>(text: &'a str, names: &[&str]) -> &'a str {
    text.lines()
        .filter_map(|l| l.strip_prefix("##").map(str::trim))
        .find_map(|l| names.iter().find_map(|n| l.strip_prefix(n)))
        .unwrap_or_else(|| panic!("no {names:?}"))
        .trim()
}

fn hex_u32(s: &str) -> u32 {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex bits")
}

#[test]
fn reproduces_every_row_of_the_twelve_runs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/asert");
    let params = AsertParams {
        spacing_secs: 600,
        half_life_secs: 172_800,
        // Bitcoin Cash's proof-of-work limit: ~0 >> 32.
        pow_limit: U256::MAX >> 32,
    };
    let mut rows = 0;
    for run in 1..=12 {
        let text = std::fs::read_to_string(dir.join(format!("run{run:02}"))).expect("vector file");
        let anchor = AsertAnchor {
            height: field(&text, &["anchor height:"]).parse().expect("height"),
            parent_time: field(&text, &["anchor ancestor time:", "anchor parent time:"])
                .parse()
                .expect("time"),
            bits: hex_u32(field(&text, &["anchor nBits:"])),
        };
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (height, time, bits) = (
                cols[1].parse::<u64>().unwrap(),
                cols[2].parse::<i64>().unwrap(),
                hex_u32(cols[3]),
            );
            assert_eq!(
                next_bits(&params, &anchor, time, height),
                bits,
                "run{run:02} line `{line}`"
            );
            rows += 1;
        }
    }
    assert_eq!(rows, 14_000, "every row of the twelve runs is checked");
}
