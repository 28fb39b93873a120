//! A Merkle-Patricia trie (Ethereum's state and storage tries) whose nodes live on disk
//! and are loaded on demand: the part in memory is what was touched since it was last
//! collapsed ([`Trie::collapse`]), so memory does not grow with the state.
//!
//! Storage model (path-based, as geth's path scheme): every branch and extension node
//! referenced by hash is stored under its path from the root; leaves are not stored, they
//! are rebuilt from the flat state (the one key under a leaf's path). [`NodeSource`]
//! answers both lookups. A loaded node is checked against the hash its parent holds, so a
//! stale row (a node since replaced by a leaf) is never mistaken for the node.
//!
//! Every root is Ethereum's: node encodings come from alloy-trie, and the tests compare
//! roots with alloy-trie's computation from scratch, through inserts, removals, writes
//! to disk, collapses and reloads.
//!
//! All keys have the same length (hashed keys: 64 nibbles), so no key is a prefix of
//! another and branches never hold values.

use std::collections::BTreeMap;

use alloy_primitives::{B256, keccak256};
use alloy_rlp::Decodable;
use alloy_trie::nodes::{BranchNodeRef, ExtensionNodeRef, LeafNodeRef, RlpNode, TrieNode};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieMask};

/// Why a node could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrieError {
    #[error("trie node {hash} at path {path:?} is neither stored nor a leaf of the flat state")]
    Missing { path: Nibbles, hash: B256 },
    #[error("stored trie node at path {path:?} does not decode: {source}")]
    Decode {
        path: Nibbles,
        #[source]
        source: alloy_rlp::Error,
    },
    #[error("reading trie nodes: {0}")]
    Store(String),
}

/// Where a trie's nodes come from.
pub trait NodeSource {
    /// The stored branch or extension node at `path`, if any row is there.
    fn stored(&self, path: &Nibbles) -> Result<Option<Vec<u8>>, TrieError>;
    /// The one key of the flat state under `path` with its leaf value (RLP), if any.
    fn leaf(&self, path: &Nibbles) -> Result<Option<(B256, Vec<u8>)>, TrieError>;
}

/// A trie with nothing on disk.
pub struct NoNodes;

impl NodeSource for NoNodes {
    fn stored(&self, _: &Nibbles) -> Result<Option<Vec<u8>>, TrieError> {
        Ok(None)
    }
    fn leaf(&self, _: &Nibbles) -> Result<Option<(B256, Vec<u8>)>, TrieError> {
        Ok(None)
    }
}

/// Node writes since the last [`Trie::written`], by path: the node's encoding, or `None`
/// where no stored node must remain. The last operation on a path wins.
pub type NodeOps = BTreeMap<Nibbles, Option<Vec<u8>>>;

#[derive(Default, Clone)]
enum Node {
    #[default]
    Empty,
    /// A node referenced by hash, not loaded.
    Stub(B256),
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
    /// The root hash while nothing changed since it was computed.
    root_hash: Option<B256>,
    ops: NodeOps,
}

/// What a mutation needs besides the node: the whole key, the source, and where to note
/// paths whose stored node no longer exists.
struct Walk<'a> {
    full: Nibbles,
    src: &'a dyn NodeSource,
    ops: &'a mut NodeOps,
}

impl Walk<'_> {
    fn path(&self, depth: usize) -> Nibbles {
        self.full.slice(..depth)
    }

    fn rest(&self, depth: usize) -> Nibbles {
        self.full.slice(depth..)
    }

    fn stale(&mut self, depth: usize) {
        let p = self.path(depth);
        self.ops.insert(p, None);
    }

    fn resolve(&self, node: &mut Node, depth: usize) -> Result<(), TrieError> {
        if let Node::Stub(hash) = node {
            *node = load(self.src, &self.path(depth), *hash)?;
        }
        Ok(())
    }
}

impl Trie {
    /// The trie whose root hash is `root`, its nodes to be loaded from a source.
    pub fn at(root: B256) -> Trie {
        Trie {
            root: if root == EMPTY_ROOT_HASH {
                Node::Empty
            } else {
                Node::Stub(root)
            },
            root_hash: Some(root),
            ops: NodeOps::new(),
        }
    }

    /// Sets `key` (a 32-byte hashed key) to `value` (its RLP-encoded leaf value).
    pub fn insert(
        &mut self,
        src: &dyn NodeSource,
        key: &B256,
        value: Vec<u8>,
    ) -> Result<(), TrieError> {
        self.root_hash = None;
        let mut w = Walk {
            full: Nibbles::unpack(key),
            src,
            ops: &mut self.ops,
        };
        insert(&mut self.root, &mut w, 0, value)
    }

    pub fn remove(&mut self, src: &dyn NodeSource, key: &B256) -> Result<(), TrieError> {
        self.root_hash = None;
        let mut w = Walk {
            full: Nibbles::unpack(key),
            src,
            ops: &mut self.ops,
        };
        remove(&mut self.root, &mut w, 0).map(|_| ())
    }

    /// Loads the root node if it is not in memory (checking it against the root hash).
    pub fn load_root(&mut self, src: &dyn NodeSource) -> Result<(), TrieError> {
        if let Node::Stub(hash) = self.root {
            self.root = load(src, &Nibbles::new(), hash)?;
        }
        Ok(())
    }

    /// The root hash; only nodes changed since the last call are hashed again.
    pub fn root(&mut self) -> B256 {
        if let Some(h) = self.root_hash {
            return h;
        }
        let h = match &self.root {
            Node::Empty => EMPTY_ROOT_HASH,
            Node::Stub(h) => *h,
            _ => {
                let mut buf = Vec::new();
                encode(&mut self.root, Nibbles::new(), &mut buf, &mut self.ops);
                // `encode` leaves the root node's full encoding in `buf`.
                keccak256(&buf)
            }
        };
        self.root_hash = Some(h);
        h
    }

    /// The node writes since the last [`Trie::written`] (after computing the root).
    pub fn ops(&mut self) -> NodeOps {
        self.root();
        self.ops.clone()
    }

    /// The writes [`Trie::ops`] gave are on disk.
    pub fn written(&mut self) {
        self.ops.clear();
    }

    /// Drops from memory every node at `keep` nibbles or deeper (they are on disk once
    /// [`Trie::ops`] were written). Computes the root first.
    pub fn collapse(&mut self, keep: usize) {
        self.root();
        if keep == 0 {
            if !matches!(self.root, Node::Empty) {
                self.root = Node::Stub(self.root_hash.unwrap_or(EMPTY_ROOT_HASH));
            }
            return;
        }
        collapse(&mut self.root, 0, keep);
    }
}

/// The node at `path` whose reference is `hash`: a stored branch or extension, or else a
/// leaf rebuilt from the flat state; either must hash to `hash`.
fn load(src: &dyn NodeSource, path: &Nibbles, hash: B256) -> Result<Node, TrieError> {
    if let Some(raw) = src.stored(path)?
        && keccak256(&raw) == hash
    {
        let mut node = decode(&raw).map_err(|source| TrieError::Decode {
            path: *path,
            source,
        })?;
        set_rlp(&mut node, RlpNode::word_rlp(&hash));
        return Ok(node);
    }
    if let Some((key, value)) = src.leaf(path)? {
        let rest = Nibbles::unpack(key).slice(path.len()..);
        let mut buf = Vec::new();
        LeafNodeRef::new(&rest, &value).rlp(&mut buf);
        if keccak256(&buf) == hash {
            return Ok(Node::Leaf {
                key: rest,
                value,
                rlp: Some(RlpNode::word_rlp(&hash)),
            });
        }
    }
    Err(TrieError::Missing { path: *path, hash })
}

fn set_rlp(node: &mut Node, r: RlpNode) {
    match node {
        Node::Leaf { rlp, .. } | Node::Ext { rlp, .. } | Node::Branch { rlp, .. } => *rlp = Some(r),
        Node::Empty | Node::Stub(_) => {}
    }
}

/// A node from its encoding; hashed children become stubs, inline ones are decoded.
fn decode(raw: &[u8]) -> Result<Node, alloy_rlp::Error> {
    let child = |r: &RlpNode| -> Result<Node, alloy_rlp::Error> {
        match r.as_hash() {
            Some(h) => Ok(Node::Stub(h)),
            None => {
                let mut n = decode(r.as_slice())?;
                set_rlp(&mut n, r.clone());
                Ok(n)
            }
        }
    };
    let mut buf = raw;
    Ok(match TrieNode::decode(&mut buf)? {
        TrieNode::EmptyRoot => Node::Empty,
        TrieNode::Leaf(l) => Node::Leaf {
            key: l.key,
            value: l.value,
            rlp: None,
        },
        TrieNode::Extension(e) => Node::Ext {
            key: e.key,
            child: Box::new(child(&e.child)?),
            rlp: None,
        },
        TrieNode::Branch(b) => {
            let mut children = empty_children();
            let mut stack = b.stack.iter();
            for i in 0..16u8 {
                if b.state_mask.is_bit_set(i) {
                    let r = stack
                        .next()
                        .ok_or(alloy_rlp::Error::Custom("branch stack"))?;
                    children[i as usize] = child(r)?;
                }
            }
            Node::Branch {
                children,
                rlp: None,
            }
        }
    })
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

fn insert(node: &mut Node, w: &mut Walk, depth: usize, value: Vec<u8>) -> Result<(), TrieError> {
    w.resolve(node, depth)?;
    let path = w.rest(depth);
    match std::mem::take(node) {
        Node::Empty | Node::Stub(_) => *node = leaf(path, value),
        Node::Leaf {
            key, value: old, ..
        } => {
            if key == path {
                *node = leaf(key, value);
                return Ok(());
            }
            let c = key.common_prefix_length(&path);
            let moved = leaf(key.slice(c + 1..), old);
            *node = split(c, key.get_unchecked(c), moved, path, value);
        }
        Node::Ext {
            key,
            mut child,
            rlp,
        } => {
            let c = key.common_prefix_length(&path);
            if c == key.len() {
                let r = insert(&mut child, w, depth + c, value);
                let rlp = if r.is_ok() { None } else { rlp };
                *node = Node::Ext { key, child, rlp };
                return r;
            }
            let moved = ext(key.slice(c + 1..), *child);
            *node = split(c, key.get_unchecked(c), moved, path, value);
        }
        Node::Branch { mut children, rlp } => {
            let slot = &mut children[path.get_unchecked(0) as usize];
            let r = insert(slot, w, depth + 1, value);
            let rlp = if r.is_ok() { None } else { rlp };
            *node = Node::Branch { children, rlp };
            return r;
        }
    }
    Ok(())
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
fn remove(node: &mut Node, w: &mut Walk, depth: usize) -> Result<bool, TrieError> {
    w.resolve(node, depth)?;
    let path = w.rest(depth);
    let removed = match node {
        Node::Empty | Node::Stub(_) => false,
        Node::Leaf { key, .. } => {
            if *key == path {
                *node = Node::Empty;
                return Ok(true);
            }
            false
        }
        Node::Ext { key, child, rlp } => {
            if !path.starts_with(key) {
                return Ok(false);
            }
            let r = remove(child, w, depth + key.len())?;
            if r {
                *rlp = None;
            }
            r
        }
        Node::Branch { children, rlp } => {
            let r = remove(&mut children[path.get_unchecked(0) as usize], w, depth + 1)?;
            if r {
                *rlp = None;
            }
            r
        }
    };
    if removed {
        normalize(node, w, depth)?;
    }
    Ok(removed)
}

/// Restores the canonical shape after a removal below `node` (at `depth`): a branch with
/// one child becomes an extension or a longer leaf; extensions merge with what they point
/// to. Paths whose stored node goes away are noted.
fn normalize(node: &mut Node, w: &mut Walk, depth: usize) -> Result<(), TrieError> {
    match node {
        Node::Branch { children, .. } => {
            let mut live = children
                .iter()
                .enumerate()
                .filter(|(_, c)| !matches!(c, Node::Empty));
            let only = match (live.next().map(|(i, _)| i), live.next()) {
                (Some(i), None) => i,
                _ => return Ok(()),
            };
            let mut prefix = w.path(depth);
            prefix.push(only as u8);
            // The child is merged up: its kind decides the shape.
            if let Node::Stub(hash) = children[only] {
                children[only] = load(w.src, &prefix, hash)?;
            }
            let child = std::mem::take(&mut children[only]);
            // A branch child stays where it is (under a one-nibble extension); an
            // extension child is merged into this node and its row goes.
            if matches!(child, Node::Ext { .. }) {
                w.ops.insert(prefix, None);
            }
            let mut nibble = Nibbles::new();
            nibble.push(only as u8);
            *node = prepend(nibble, child);
        }
        Node::Ext { key, child, .. } => {
            let key = *key;
            match std::mem::take(child.as_mut()) {
                Node::Empty => *node = Node::Empty,
                branch @ (Node::Branch { .. } | Node::Stub(_)) => {
                    **child = branch;
                    return Ok(());
                }
                other => {
                    w.stale(depth + key.len());
                    *node = prepend(key, other);
                }
            }
        }
        _ => return Ok(()),
    }
    if !matches!(node, Node::Ext { .. } | Node::Branch { .. }) {
        w.stale(depth);
    }
    Ok(())
}

/// `child` moved up under `prefix` nibbles.
fn prepend(prefix: Nibbles, child: Node) -> Node {
    match child {
        Node::Leaf { key, value, .. } => leaf(prefix.join(&key), value),
        Node::Ext { key, child, .. } => ext(prefix.join(&key), *child),
        other @ (Node::Branch { .. } | Node::Stub(_)) => ext(prefix, other),
        Node::Empty => Node::Empty,
    }
}

/// The node's reference (inline encoding or hash), from cache when unchanged. Leaves the
/// node's own full encoding in `buf` when it had to encode it. A branch or extension
/// encoded again is noted in `ops` under its path `at` when it is referenced by hash.
fn encode(node: &mut Node, at: Nibbles, buf: &mut Vec<u8>, ops: &mut NodeOps) -> RlpNode {
    match node {
        Node::Empty => RlpNode::from_rlp(&[alloy_rlp::EMPTY_STRING_CODE]),
        Node::Stub(h) => RlpNode::word_rlp(h),
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
            let c = encode(child, at.join(key), &mut vec![0], ops);
            buf.clear();
            let r = ExtensionNodeRef::new(key, &c).rlp(buf);
            if r.is_hash() || at.is_empty() {
                ops.insert(at, Some(buf.clone()));
            }
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
                    scratch.clear();
                    scratch.push(0);
                    let mut p = at;
                    p.push(i as u8);
                    stack.push(encode(c, p, &mut scratch, ops));
                    mask.set_bit(i as u8);
                }
            }
            buf.clear();
            let r = BranchNodeRef::new(&stack, mask).rlp(buf);
            if r.is_hash() || at.is_empty() {
                ops.insert(at, Some(buf.clone()));
            }
            *rlp = Some(r.clone());
            r
        }
    }
}

/// Replaces hashed nodes at `keep` nibbles or deeper with stubs (`node` is at `depth`).
fn collapse(node: &mut Node, depth: usize, keep: usize) {
    let visit = |c: &mut Node, d: usize| {
        if d >= keep {
            let hash = match c {
                Node::Leaf { rlp: Some(r), .. }
                | Node::Ext { rlp: Some(r), .. }
                | Node::Branch { rlp: Some(r), .. } => r.as_hash(),
                _ => None,
            };
            if let Some(h) = hash {
                *c = Node::Stub(h);
                return;
            }
        }
        collapse(c, d, keep);
    };
    match node {
        Node::Ext { key, child, .. } => visit(child, depth + key.len()),
        Node::Branch { children, .. } => {
            for c in children.iter_mut() {
                visit(c, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;
    use std::cell::RefCell;

    fn value(v: u64) -> Vec<u8> {
        alloy_rlp::encode(U256::from(v))
    }

    /// alloy-trie's root of the same (already hashed, sorted) keys, built from scratch.
    fn reference(m: &BTreeMap<B256, u64>) -> B256 {
        alloy_trie::root::storage_root(m.iter().map(|(k, v)| (*k, U256::from(*v))))
    }

    /// A disk in memory: stored nodes by path, and the flat key-values.
    #[derive(Default)]
    struct Disk {
        nodes: RefCell<BTreeMap<Nibbles, Vec<u8>>>,
        flat: RefCell<BTreeMap<B256, u64>>,
    }

    impl NodeSource for Disk {
        fn stored(&self, path: &Nibbles) -> Result<Option<Vec<u8>>, TrieError> {
            Ok(self.nodes.borrow().get(path).cloned())
        }
        fn leaf(&self, path: &Nibbles) -> Result<Option<(B256, Vec<u8>)>, TrieError> {
            let mut low = [0u8; 32];
            path.pack_to(&mut low);
            Ok(self
                .flat
                .borrow()
                .range(B256::from(low)..)
                .next()
                .filter(|(k, _)| Nibbles::unpack(k).starts_with(path))
                .map(|(k, v)| (*k, value(*v))))
        }
    }

    impl Disk {
        fn write(&self, t: &mut Trie, m: &BTreeMap<B256, u64>) {
            let ops = t.ops();
            t.written();
            for (p, op) in ops {
                match op {
                    Some(raw) => self.nodes.borrow_mut().insert(p, raw),
                    None => self.nodes.borrow_mut().remove(&p),
                };
            }
            *self.flat.borrow_mut() = m.clone();
        }
    }

    #[test]
    fn roots_match_alloy_trie_through_changes_writes_collapses_and_reloads() {
        let disk = Disk::default();
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
        for round in 0..4000 {
            let k = keccak256((next() % 400).to_be_bytes());
            match next() % 3 {
                0 | 1 => {
                    let v = 1 + next() % 1000;
                    t.insert(&disk, &k, value(v)).unwrap();
                    m.insert(k, v);
                }
                _ => {
                    t.remove(&disk, &k).unwrap();
                    m.remove(&k);
                }
            }
            if round % 7 == 0 {
                assert_eq!(t.root(), reference(&m), "after {round} changes");
            }
            // Now and then the changes go to disk and memory keeps only the top.
            if round % 50 == 49 {
                disk.write(&mut t, &m);
                t.collapse((round / 50) % 4);
                if round % 200 == 199 {
                    t = Trie::at(reference(&m));
                }
            }
        }
        for k in m.keys().copied().collect::<Vec<_>>() {
            t.remove(&disk, &k).unwrap();
            m.remove(&k);
            assert_eq!(t.root(), reference(&m));
        }
        assert_eq!(t.root(), EMPTY_ROOT_HASH);
        disk.write(&mut t, &m);
        assert!(
            disk.nodes.borrow().is_empty(),
            "an empty trie leaves no stored node: {:?}",
            disk.nodes.borrow().keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn short_tries_with_inline_nodes() {
        // Keys that share long prefixes make small nodes that are inlined, not hashed.
        let disk = Disk::default();
        let mut t = Trie::default();
        let mut m = BTreeMap::new();
        for i in 0..40u8 {
            let mut k = [0u8; 32];
            k[31] = i;
            let k = B256::from(k);
            t.insert(&disk, &k, value(i as u64 + 1)).unwrap();
            m.insert(k, i as u64 + 1);
            assert_eq!(t.root(), reference(&m), "{i} keys");
            disk.write(&mut t, &m);
            t = Trie::at(reference(&m));
        }
    }

    #[test]
    fn a_missing_or_tampered_node_is_an_error_not_a_wrong_root() {
        let disk = Disk::default();
        let mut t = Trie::default();
        let mut m = BTreeMap::new();
        for i in 0..300u64 {
            let k = keccak256(i.to_be_bytes());
            t.insert(&disk, &k, value(i + 1)).unwrap();
            m.insert(k, i + 1);
        }
        disk.write(&mut t, &m);
        let root = t.root();
        // A stored branch replaced by garbage: loading it fails.
        let path = {
            let mut p = Nibbles::new();
            p.push(3);
            p
        };
        disk.nodes.borrow_mut().insert(path, vec![0xc0]);
        let mut t = Trie::at(root);
        let k = (0..300u64)
            .map(|i| keccak256(i.to_be_bytes()))
            .find(|k| Nibbles::unpack(k).get_unchecked(0) == 3)
            .unwrap();
        let e = t.insert(&disk, &k, value(9)).unwrap_err();
        assert!(matches!(e, TrieError::Missing { .. }), "{e}");
    }
}
