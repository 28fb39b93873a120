//! An in-memory Merkle-Patricia trie that keeps every node's encoding reference, so a
//! root after a few changes costs hashing only the changed paths (Ethereum's state and
//! storage tries). Node encodings come from alloy-trie, so the roots are Ethereum's;
//! the tests compare every root with alloy-trie's from-scratch computation.
//!
//! All keys have the same length (hashed keys: 64 nibbles), so no key is a prefix of
//! another and branches never hold values.

use alloy_primitives::{B256, keccak256};
use alloy_trie::nodes::{BranchNodeRef, ExtensionNodeRef, LeafNodeRef, RlpNode};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieMask};

#[derive(Default, Clone)]
enum Node {
    #[default]
    Empty,
    Leaf {
        key: Nibbles,
        value: Vec<u8>,
        rlp: Option<RlpNode>,
    },
    Ext {
        key: Nibbles,
        child: Box<Node>,
        rlp: Option<RlpNode>,
    },
    Branch {
        children: Box<[Node; 16]>,
        rlp: Option<RlpNode>,
    },
}

/// A trie of fixed-length keys.
#[derive(Default, Clone)]
pub struct Trie {
    root: Node,
    len: usize,
}

impl Trie {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets `key` (a 32-byte hashed key) to `value` (its RLP-encoded leaf value).
    pub fn insert(&mut self, key: &B256, value: Vec<u8>) {
        if insert(&mut self.root, Nibbles::unpack(key), value) {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, key: &B256) {
        if remove(&mut self.root, Nibbles::unpack(key)) {
            self.len -= 1;
        }
    }

    /// The root hash; only nodes changed since the last call are hashed again.
    pub fn root(&mut self) -> B256 {
        if matches!(self.root, Node::Empty) {
            return EMPTY_ROOT_HASH;
        }
        let mut buf = Vec::new();
        encode(&mut self.root, &mut buf);
        // `encode` leaves the root node's full encoding in `buf`.
        keccak256(&buf)
    }
}

fn leaf(key: Nibbles, value: Vec<u8>) -> Node {
    Node::Leaf {
        key,
        value,
        rlp: None,
    }
}

fn ext(key: Nibbles, child: Node) -> Node {
    if key.is_empty() {
        child
    } else {
        Node::Ext {
            key,
            child: Box::new(child),
            rlp: None,
        }
    }
}

fn empty_children() -> Box<[Node; 16]> {
    Box::new(std::array::from_fn(|_| Node::Empty))
}

/// Returns true when a new key was added (not a replacement).
fn insert(node: &mut Node, path: Nibbles, value: Vec<u8>) -> bool {
    match std::mem::take(node) {
        Node::Empty => {
            *node = leaf(path, value);
            true
        }
        Node::Leaf {
            key, value: old, ..
        } => {
            if key == path {
                *node = leaf(key, value);
                return false;
            }
            let c = key.common_prefix_length(&path);
            let moved = leaf(key.slice(c + 1..), old);
            *node = split(c, key.get_unchecked(c), moved, path, value);
            true
        }
        Node::Ext { key, mut child, .. } => {
            let c = key.common_prefix_length(&path);
            if c == key.len() {
                let added = insert(&mut child, path.slice(c..), value);
                *node = Node::Ext {
                    key,
                    child,
                    rlp: None,
                };
                return added;
            }
            let moved = ext(key.slice(c + 1..), *child);
            *node = split(c, key.get_unchecked(c), moved, path, value);
            true
        }
        Node::Branch { mut children, .. } => {
            let slot = &mut children[path.get_unchecked(0) as usize];
            let added = insert(slot, path.slice(1..), value);
            *node = Node::Branch {
                children,
                rlp: None,
            };
            added
        }
    }
}

/// Where `path` parts from an existing node after `c` shared nibbles: a branch holding
/// the existing node (now under its nibble `at`) and a new leaf, under an extension of
/// the shared nibbles.
fn split(c: usize, at: u8, existing: Node, path: Nibbles, value: Vec<u8>) -> Node {
    let mut children = empty_children();
    children[at as usize] = existing;
    children[path.get_unchecked(c) as usize] = leaf(path.slice(c + 1..), value);
    ext(
        path.slice(..c),
        Node::Branch {
            children,
            rlp: None,
        },
    )
}

/// Returns true when the key was there.
fn remove(node: &mut Node, path: Nibbles) -> bool {
    let removed = match node {
        Node::Empty => false,
        Node::Leaf { key, .. } => {
            if *key == path {
                *node = Node::Empty;
                return true;
            }
            false
        }
        Node::Ext { key, child, rlp } => {
            if !path.starts_with(key) {
                return false;
            }
            let r = remove(child, path.slice(key.len()..));
            if r {
                *rlp = None;
            }
            r
        }
        Node::Branch { children, rlp } => {
            let r = remove(
                &mut children[path.get_unchecked(0) as usize],
                path.slice(1..),
            );
            if r {
                *rlp = None;
            }
            r
        }
    };
    if removed {
        normalize(node);
    }
    removed
}

/// Restores the canonical shape after a removal below `node`: a branch with one child
/// becomes an extension or a longer leaf; extensions merge with what they point to.
fn normalize(node: &mut Node) {
    *node = match std::mem::take(node) {
        Node::Branch { mut children, rlp } => {
            let mut live = children
                .iter()
                .enumerate()
                .filter(|(_, c)| !matches!(c, Node::Empty));
            match (live.next().map(|(i, _)| i), live.next()) {
                (Some(i), None) => {
                    let only = std::mem::take(&mut children[i]);
                    let mut prefix = Nibbles::new();
                    prefix.push(i as u8);
                    prepend(prefix, only)
                }
                _ => Node::Branch { children, rlp },
            }
        }
        Node::Ext { key, child, rlp } => match *child {
            Node::Empty => Node::Empty,
            branch @ Node::Branch { .. } => Node::Ext {
                key,
                child: Box::new(branch),
                rlp,
            },
            other => prepend(key, other),
        },
        other => other,
    };
}

/// `child` moved up under `prefix` nibbles.
fn prepend(prefix: Nibbles, child: Node) -> Node {
    match child {
        Node::Leaf { key, value, .. } => leaf(prefix.join(&key), value),
        Node::Ext { key, child, .. } => ext(prefix.join(&key), *child),
        branch @ Node::Branch { .. } => ext(prefix, branch),
        Node::Empty => Node::Empty,
    }
}

/// The node's reference (inline encoding or hash), from cache when unchanged. Leaves the
/// node's own full encoding in `buf` when it had to encode it.
fn encode(node: &mut Node, buf: &mut Vec<u8>) -> RlpNode {
    match node {
        Node::Empty => RlpNode::from_rlp(&[alloy_rlp::EMPTY_STRING_CODE]),
        Node::Leaf { key, value, rlp } => {
            if let Some(r) = rlp
                && !buf.is_empty()
            {
                return r.clone();
            }
            buf.clear();
            let r = LeafNodeRef::new(key, value).rlp(buf);
            *rlp = Some(r.clone());
            r
        }
        Node::Ext { key, child, rlp } => {
            if let Some(r) = rlp
                && !buf.is_empty()
            {
                return r.clone();
            }
            // A non-empty buffer lets the child answer from its cache.
            let c = encode(child, &mut vec![0]);
            buf.clear();
            let r = ExtensionNodeRef::new(key, &c).rlp(buf);
            *rlp = Some(r.clone());
            r
        }
        Node::Branch { children, rlp } => {
            if let Some(r) = rlp
                && !buf.is_empty()
            {
                return r.clone();
            }
            let mut stack = Vec::with_capacity(16);
            let mut mask = TrieMask::default();
            let mut scratch = Vec::new();
            for (i, c) in children.iter_mut().enumerate() {
                if !matches!(c, Node::Empty) {
                    scratch.push(0);
                    stack.push(encode(c, &mut scratch));
                    mask.set_bit(i as u8);
                }
            }
            buf.clear();
            let r = BranchNodeRef::new(&stack, mask).rlp(buf);
            *rlp = Some(r.clone());
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;
    use std::collections::BTreeMap;

    fn value(v: u64) -> Vec<u8> {
        alloy_rlp::encode(U256::from(v))
    }

    /// alloy-trie's root of the same (already hashed, sorted) keys, built from scratch.
    fn reference(m: &BTreeMap<B256, u64>) -> B256 {
        alloy_trie::root::storage_root(m.iter().map(|(k, v)| (*k, U256::from(*v))))
    }

    #[test]
    fn roots_match_alloy_trie_through_inserts_updates_and_removals() {
        let mut t = Trie::default();
        let mut m = BTreeMap::new();
        assert_eq!(t.root(), EMPTY_ROOT_HASH);
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed
        };
        for round in 0..3000 {
            let k = keccak256((next() % 400).to_be_bytes());
            match next() % 3 {
                0 | 1 => {
                    let v = 1 + next() % 1000;
                    t.insert(&k, value(v));
                    m.insert(k, v);
                }
                _ => {
                    t.remove(&k);
                    m.remove(&k);
                }
            }
            if round % 7 == 0 {
                assert_eq!(t.root(), reference(&m), "after {round} changes");
                assert_eq!(t.len(), m.len());
            }
        }
        for k in m.keys().copied().collect::<Vec<_>>() {
            t.remove(&k);
            m.remove(&k);
            assert_eq!(t.root(), reference(&m));
        }
        assert_eq!(t.root(), EMPTY_ROOT_HASH);
    }

    #[test]
    fn short_tries_with_inline_nodes() {
        // Keys that share long prefixes make small nodes that are inlined, not hashed.
        let mut t = Trie::default();
        let mut m = BTreeMap::new();
        for i in 0..40u8 {
            let mut k = [0u8; 32];
            k[31] = i;
            let k = B256::from(k);
            t.insert(&k, value(i as u64 + 1));
            m.insert(k, i as u64 + 1);
            assert_eq!(t.root(), reference(&m), "{i} keys");
        }
    }
}
