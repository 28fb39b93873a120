//! Bencode (BEP 3): a strict decoder that borrows from its input and remembers the raw
//! bytes of every dictionary (an infohash is the SHA-1 of the info dictionary exactly as
//! it was sent), and an encoder whose dictionaries are always key-sorted.
//!
//! Strictness follows libtorrent's `bdecode`, so that nodus loads and refuses the same
//! torrents: integers have no leading zeros, no `-0` and must fit in an i64; strings
//! must fit in the input; nesting is limited to [`MAX_DEPTH`]; dictionary keys must be
//! strings. Key order is recorded, not enforced ([`Dict::sorted`]): libtorrent loads
//! torrents whose info keys are out of order but refuses an unsorted v2 file tree.
//! Trailing bytes after the top value are an error only in [`decode_exact`].
//!
//! No crate fit: the ones on crates.io either do not expose the raw bytes of a nested
//! dictionary, or accept unsorted keys and overlong integers, which libtorrent refuses.

use std::collections::BTreeMap;

/// Deepest nesting accepted (libtorrent's default).
pub const MAX_DEPTH: usize = 100;
/// Most items in one input (lists, dictionaries and their elements), a bound on memory.
pub const MAX_ITEMS: usize = 4_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    #[error("bencode: unexpected end of input at byte {0}")]
    Eof(usize),
    #[error("bencode: unexpected byte {byte:#04x} at {pos}")]
    Unexpected { byte: u8, pos: usize },
    #[error("bencode: malformed integer at byte {0}")]
    BadInt(usize),
    #[error("bencode: string length at byte {0} runs past the input")]
    BadLength(usize),
    #[error("bencode: nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("bencode: more than {MAX_ITEMS} items")]
    TooManyItems,
    #[error("bencode: {0} trailing bytes after the value")]
    Trailing(usize),
}

/// A decoded value borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    Dict(Dict<'a>),
}

/// A dictionary: its entries in the order sent, and the raw bytes it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dict<'a> {
    pub entries: Vec<(&'a [u8], Value<'a>)>,
    pub raw: &'a [u8],
    /// Keys strictly ascending (so also without repeats), as BEP 3 requires.
    pub sorted: bool,
}

impl<'a> Dict<'a> {
    /// The value of `key`; with repeated keys, the first.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.get_bytes(key.as_bytes())
    }
    pub fn get_bytes(&self, key: &[u8]) -> Option<&Value<'a>> {
        if self.sorted {
            self.entries
                .binary_search_by(|(k, _)| (*k).cmp(key))
                .ok()
                .map(|i| &self.entries[i].1)
        } else {
            self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
        }
    }
    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_int)
    }
    pub fn bytes(&self, key: &str) -> Option<&'a [u8]> {
        self.get(key).and_then(Value::as_bytes)
    }
    pub fn str(&self, key: &str) -> Option<&'a str> {
        self.bytes(key).and_then(|b| std::str::from_utf8(b).ok())
    }
    pub fn dict(&self, key: &str) -> Option<&Dict<'a>> {
        self.get(key).and_then(Value::as_dict)
    }
    pub fn list(&self, key: &str) -> Option<&[Value<'a>]> {
        self.get(key).and_then(Value::as_list)
    }
}

impl<'a> Value<'a> {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
}

/// Decodes one value from the start of `input`; returns it and the bytes it used.
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), BencodeError> {
    let mut d = Decoder {
        input,
        pos: 0,
        items: 0,
    };
    let v = d.value(0)?;
    Ok((v, d.pos))
}

/// Decodes exactly one value that spans all of `input`.
pub fn decode_exact(input: &[u8]) -> Result<Value<'_>, BencodeError> {
    let (v, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(BencodeError::Trailing(input.len() - used));
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    items: usize,
}

impl<'a> Decoder<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::Eof(self.pos))
    }

    fn count(&mut self) -> Result<(), BencodeError> {
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(BencodeError::TooManyItems);
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        if depth > MAX_DEPTH {
            return Err(BencodeError::TooDeep);
        }
        self.count()?;
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let i = self.int(b'e')?;
                Ok(Value::Int(i))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?)),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                let start = self.pos;
                self.pos += 1;
                let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
                let mut sorted = true;
                while self.peek()? != b'e' {
                    let key_pos = self.pos;
                    let key = match self.peek()? {
                        b'0'..=b'9' => self.bytes()?,
                        byte => return Err(BencodeError::Unexpected { byte, pos: key_pos }),
                    };
                    if let Some((last, _)) = entries.last()
                        && *last >= key
                    {
                        sorted = false;
                    }
                    let v = self.value(depth + 1)?;
                    entries.push((key, v));
                }
                self.pos += 1;
                Ok(Value::Dict(Dict {
                    entries,
                    raw: &self.input[start..self.pos],
                    sorted,
                }))
            }
            byte => Err(BencodeError::Unexpected {
                byte,
                pos: self.pos,
            }),
        }
    }

    /// Digits up to `end`, with libtorrent's rules.
    fn int(&mut self, end: u8) -> Result<i64, BencodeError> {
        let start = self.pos;
        let rest = &self.input[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(BencodeError::Eof(self.input.len()))?;
        let digits = &rest[..len];
        let (neg, body) = match digits.first() {
            Some(b'-') => (true, &digits[1..]),
            _ => (false, digits),
        };
        let bad = body.is_empty()
            || !body.iter().all(u8::is_ascii_digit)
            || (body.len() > 1 && body[0] == b'0')
            || (neg && body == b"0");
        if bad {
            return Err(BencodeError::BadInt(start));
        }
        let text = std::str::from_utf8(digits).map_err(|_| BencodeError::BadInt(start))?;
        let v: i64 = text.parse().map_err(|_| BencodeError::BadInt(start))?;
        self.pos += len + 1;
        Ok(v)
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        let len = self.int(b':')?;
        let len = usize::try_from(len).map_err(|_| BencodeError::BadLength(start))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or(BencodeError::BadLength(start))?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// An owned value to encode. Dictionaries are `BTreeMap`s, so keys come out sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BValue {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<BValue>),
    Dict(BTreeMap<Vec<u8>, BValue>),
    /// Bytes that are already bencoded (an info dictionary kept verbatim).
    Raw(Vec<u8>),
}

impl BValue {
    pub fn str(s: &str) -> BValue {
        BValue::Bytes(s.as_bytes().to_vec())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            BValue::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            BValue::Bytes(b) => {
                out.extend_from_slice(b.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(b);
            }
            BValue::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            BValue::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    out.extend_from_slice(k.len().to_string().as_bytes());
                    out.push(b':');
                    out.extend_from_slice(k);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            BValue::Raw(r) => out.extend_from_slice(r),
        }
    }
}

/// Builds a dictionary from `(key, value)` pairs.
pub fn dict<const N: usize>(entries: [(&str, BValue); N]) -> BValue {
    BValue::Dict(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

impl From<&Value<'_>> for BValue {
    fn from(v: &Value<'_>) -> BValue {
        match v {
            Value::Int(i) => BValue::Int(*i),
            Value::Bytes(b) => BValue::Bytes(b.to_vec()),
            Value::List(l) => BValue::List(l.iter().map(BValue::from).collect()),
            Value::Dict(d) => BValue::Raw(d.raw.to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_raw_spans() {
        let input = b"d4:infod6:lengthi5e4:name1:xe3:numli-3ei0eee";
        let v = decode_exact(input).unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.dict("info").unwrap().raw, b"d6:lengthi5e4:name1:xe");
        assert_eq!(d.list("num").unwrap()[0].as_int(), Some(-3));
        let owned = BValue::from(&v);
        assert_eq!(owned.encode(), input);
    }

    #[test]
    fn refuses_what_libtorrent_refuses() {
        for bad in [
            &b"i01e"[..],
            b"i-0e",
            b"i-e",
            b"ie",
            b"i99999999999999999999e",
            b"5:abc",
            b"di1e0:e",
            b"l",
            b"x",
            b"-1:",
        ] {
            assert!(
                decode_exact(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "l".repeat(MAX_DEPTH + 2) + &"e".repeat(MAX_DEPTH + 2);
        assert_eq!(decode_exact(deep.as_bytes()), Err(BencodeError::TooDeep));
        assert_eq!(decode_exact(b"i1ei2e"), Err(BencodeError::Trailing(3)));
    }

    #[test]
    fn records_key_order() {
        let unsorted = decode_exact(b"d1:bi2e1:ai1ee").unwrap();
        let d = unsorted.as_dict().unwrap();
        assert!(!d.sorted);
        assert_eq!(d.int("a"), Some(1));
        let sorted = decode_exact(b"d1:ai1e1:bi2ee").unwrap();
        assert!(sorted.as_dict().unwrap().sorted);
        assert!(
            !decode_exact(b"d1:ai1e1:ai2ee")
                .unwrap()
                .as_dict()
                .unwrap()
                .sorted
        );
    }

    #[test]
    fn encoder_sorts_keys() {
        let v = dict([("b", BValue::Int(1)), ("a", BValue::str("x"))]);
        assert_eq!(v.encode(), b"d1:a1:x1:bi1ee");
    }
}
