//! Redundant audio (RFC 2198, as WebRTC carries Opus in "red"): a packet carries the
//! frame before its own as well, so a single lost packet is rebuilt in full from the
//! next one rather than from Opus's lower-rate in-band FEC. Used while the other side
//! reports loss ([`crate::adapt`]); it doubles what a call sends.
//!
//! ```text
//! |F=1| block PT (7) | timestamp offset (14) | block length (10) |  one redundant block
//! |F=0| primary PT (7) |                                           final header
//! redundant data, primary data
//! ```

use crate::media::{PAYLOAD_TYPE, TICKS_PER_FRAME};

/// The dynamic payload type used for RED (as WebRTC's SDP usually has it).
pub const RED_PAYLOAD_TYPE: u8 = 63;
/// A block length has 10 bits.
const MAX_BLOCK: usize = 1023;

/// A RED payload of `primary` with `previous` as its redundant block; None when the
/// previous frame is too long to carry (then send `primary` plain).
pub fn encode(primary: &[u8], previous: &[u8]) -> Option<Vec<u8>> {
    if previous.len() > MAX_BLOCK {
        return None;
    }
    let mut p = Vec::with_capacity(5 + previous.len() + primary.len());
    let header: u32 =
        (1 << 31) | ((PAYLOAD_TYPE as u32) << 24) | (TICKS_PER_FRAME << 10) | previous.len() as u32;
    p.extend_from_slice(&header.to_be_bytes());
    p.push(PAYLOAD_TYPE);
    p.extend_from_slice(previous);
    p.extend_from_slice(primary);
    Some(p)
}

/// A RED payload's primary frame and, when it carries one, the frame one before it.
/// None when it is not RED as [`encode`] makes it (one Opus block, one frame back) or
/// its lengths do not add up.
pub fn decode(payload: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let first = *payload.first()?;
    if first & 0x80 == 0 {
        // No redundant block: just the final header.
        return (first == PAYLOAD_TYPE).then(|| (&payload[1..], None));
    }
    let header = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?);
    let pt = ((header >> 24) & 0x7f) as u8;
    let offset = (header >> 10) & 0x3fff;
    let len = (header & 0x3ff) as usize;
    if pt != PAYLOAD_TYPE || offset != TICKS_PER_FRAME || *payload.get(4)? != PAYLOAD_TYPE {
        return None;
    }
    let rest = payload.get(5..)?;
    if rest.len() < len {
        return None;
    }
    let (redundant, primary) = rest.split_at(len);
    Some((primary, (!redundant.is_empty()).then_some(redundant)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_and_the_one_before_come_back() {
        let p = encode(b"frame 2", b"frame one").unwrap();
        assert_eq!(decode(&p), Some((&b"frame 2"[..], Some(&b"frame one"[..]))));
        assert_eq!(decode(&[PAYLOAD_TYPE, 1, 2]), Some((&[1u8, 2][..], None)));
        assert!(encode(b"x", &[0; MAX_BLOCK + 1]).is_none());
        // Lengths that do not add up, other payload types, other offsets.
        let mut short = p.clone();
        short.truncate(8);
        assert_eq!(decode(&short), None);
        let mut other = p.clone();
        other[4] = 0;
        assert_eq!(decode(&other), None);
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[0x80, 0, 0]), None);
    }

    proptest::proptest! {
        #[test]
        fn any_payload_decodes_within_itself_or_not_at_all(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            if let Some((primary, redundant)) = decode(&data) {
                proptest::prop_assert!(primary.len() + redundant.map_or(0, |r| r.len()) <= data.len());
            }
        }
    }
}
