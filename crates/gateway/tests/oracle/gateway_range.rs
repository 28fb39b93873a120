//! A Range header from any HTTP client, over a file of any length: the plan never
//! panics, and every range it yields lies inside the file, in order asked, without
//! overlaps, at most `MAX_RANGES` of them.

use nodus_gateway::range::{MAX_RANGES, Plan, plan};

pub fn check(data: &[u8]) {
    // The first 8 bytes choose the file's length; the rest is the header.
    let (len, header) = match data.split_first_chunk::<8>() {
        Some((l, rest)) => (u64::from_le_bytes(*l) % (1 << 40), rest),
        None => (1000, data),
    };
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    if let Plan::Parts(rs) = plan(Some(header), len) {
        assert!(!rs.is_empty() && rs.len() <= MAX_RANGES);
        for (i, r) in rs.iter().enumerate() {
            assert!(r.start() <= r.end() && *r.end() < len, "{r:?} of {len}");
            for o in &rs[..i] {
                assert!(r.end() < o.start() || o.end() < r.start(), "overlap");
            }
        }
    }
}
