//! A set of piece indices, in the wire's order (bit 7 of byte 0 is piece 0).

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl Bitfield {
    pub fn new(len: u32) -> Bitfield {
        Bitfield {
            bytes: vec![0; (len as usize).div_ceil(8)],
            len,
            ones: 0,
        }
    }

    pub fn full(len: u32) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// From wire bytes; `None` if the length is wrong or spare bits are set.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Option<Bitfield> {
        if bytes.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let spare = (bytes.len() * 8) as u32 - len;
        if spare > 0 && bytes.last().is_some_and(|b| b & ((1u8 << spare) - 1) != 0) {
            return None;
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Some(Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn len(&self) -> u32 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn count(&self) -> u32 {
        self.ones
    }
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Sets bit `i`; returns whether it was clear. Out of range is ignored.
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] |= 0x80 >> (i % 8);
        self.ones += 1;
        true
    }

    pub fn clear(&mut self, i: u32) {
        if self.get(i) {
            self.bytes[(i / 8) as usize] &= !(0x80 >> (i % 8));
            self.ones -= 1;
        }
    }

    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_order_and_spare_bits() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert_eq!(Bitfield::from_bytes(&[0x80, 0x40], 10), Some(b.clone()));
        assert_eq!(Bitfield::from_bytes(&[0x80, 0x20], 10), None);
        assert_eq!(Bitfield::from_bytes(&[0x80], 10), None);
        assert!(Bitfield::full(10).is_full());
    }
}
