//! Per-block difficulty by ASERT (aserti3-2d, the algorithm Bitcoin Cash runs since
//! 2020-11-15), with the block spacing and half-life as parameters.
//!
//! The next target depends only on a fixed anchor block and on how far the parent's
//! time and height have drifted from the ideal schedule since that anchor, so no
//! window of past blocks is needed and the integer arithmetic is the same on every node.

use alloy_primitives::U256;

/// Parameters of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsertParams {
    /// Ideal seconds between blocks.
    pub spacing_secs: i64,
    /// Seconds of drift that double (or halve) the target.
    pub half_life_secs: i64,
    /// The easiest target allowed.
    pub pow_limit: U256,
}

/// The block every target is computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsertAnchor {
    pub height: u64,
    /// Timestamp of the anchor block's parent.
    pub parent_time: i64,
    /// The anchor block's target, in compact form.
    pub bits: u32,
}

/// Compact target (`nBits`) of the block after one at `height` with time `time`.
pub fn next_bits(params: &AsertParams, anchor: &AsertAnchor, time: i64, height: u64) -> u32 {
    to_compact(next_target(params, anchor, time, height))
}

/// Target of the block after one at `height` with timestamp `time`.
pub fn next_target(params: &AsertParams, anchor: &AsertAnchor, time: i64, height: u64) -> U256 {
    let anchor_target = from_compact(anchor.bits);
    let time_diff = time.saturating_sub(anchor.parent_time) as i128;
    let height_diff = height.saturating_sub(anchor.height) as i128;
    let spacing = params.spacing_secs as i128;
    // Truncating division, as the reference implementation does in C++.
    let exponent: i128 =
        ((time_diff - spacing * (height_diff + 1)) * 65536) / params.half_life_secs as i128;
    // Floor (arithmetic shift), so the fractional part below lies in [0, 65536).
    let mut shifts = exponent >> 16;
    let frac = (exponent - (shifts << 16)) as u128;
    let factor = 65536u128
        + ((195_766_423_245_049u128 * frac
            + 971_821_376u128 * frac * frac
            + 5127u128 * frac * frac * frac
            + (1u128 << 47))
            >> 48);
    let mut target = anchor_target.saturating_mul(U256::from(factor));
    shifts -= 16;
    if shifts <= 0 {
        let right = (-shifts).min(256) as usize;
        target = if right >= 256 {
            U256::ZERO
        } else {
            target >> right
        };
    } else {
        let left = shifts.min(256) as usize;
        let shifted = if left >= 256 {
            U256::ZERO
        } else {
            target << left
        };
        target = if left >= 256 || (shifted >> left) != target {
            params.pow_limit
        } else {
            shifted
        };
    }
    if target.is_zero() {
        U256::from(1)
    } else if target > params.pow_limit {
        params.pow_limit
    } else {
        target
    }
}

/// Decodes Bitcoin's compact form (`nBits`): a base-256 exponent and a 23-bit mantissa.
/// A negative or overflowing value decodes as zero (an unreachable target).
pub fn from_compact(bits: u32) -> U256 {
    let size = (bits >> 24) as usize;
    let mut word = bits & 0x007f_ffff;
    let negative = word != 0 && (bits & 0x0080_0000) != 0;
    let overflow =
        word != 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32));
    if negative || overflow {
        return U256::ZERO;
    }
    if size <= 3 {
        word >>= 8 * (3 - size);
        U256::from(word)
    } else {
        U256::from(word) << (8 * (size - 3))
    }
}

/// Encodes a target in compact form, truncating the mantissa as Bitcoin's `GetCompact`.
pub fn to_compact(target: U256) -> u32 {
    let mut size = target.bit_len().div_ceil(8);
    let mut compact: u32 = if size <= 3 {
        (target.to::<u64>() << (8 * (3 - size))) as u32
    } else {
        (target >> (8 * (size - 3))).to::<u64>() as u32
    };
    // The sign bit is set: move one byte into the exponent.
    if compact & 0x0080_0000 != 0 {
        compact >>= 8;
        size += 1;
    }
    compact | ((size as u32) << 24)
}

/// Expected number of hashes to find a block at `target`: 2^256 / (target + 1).
pub fn work(target: U256) -> U256 {
    if target == U256::MAX {
        return U256::from(1);
    }
    if target.is_zero() {
        return U256::MAX;
    }
    // 2^256 / (t + 1) == (~t / (t + 1)) + 1, which stays inside 256 bits.
    (!target / (target + U256::from(1))) + U256::from(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_round_trips_bitcoin_examples() {
        assert_eq!(to_compact(from_compact(0x1d00ffff)), 0x1d00ffff);
        assert_eq!(from_compact(0x01003456), U256::ZERO);
        assert_eq!(from_compact(0x01123456), U256::from(0x12));
        assert_eq!(to_compact(U256::from(0x12)), 0x01120000);
        assert_eq!(
            from_compact(0x04923456),
            U256::ZERO,
            "negative decodes as zero"
        );
        assert_eq!(to_compact(U256::from(0x80)), 0x02008000);
        assert_eq!(from_compact(0x05009234), U256::from(0x92340000u64));
    }

    #[test]
    fn work_of_easiest_and_hardest() {
        assert_eq!(work(U256::MAX), U256::from(1));
        assert_eq!(work(U256::MAX >> 1), U256::from(2));
        assert_eq!(work(U256::ZERO), U256::MAX);
    }
}
