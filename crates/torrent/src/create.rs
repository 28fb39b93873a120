//! Making a torrent from a file or a directory: v1, v2 or hybrid (the default).
//!
//! Files are taken in path order (the order of a v2 file tree). In v2 and hybrid
//! torrents each file starts on a piece boundary; a hybrid's v1 file list says so with
//! pad files, so both infohashes describe one piece space.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::bencode::{BValue, dict};
use crate::merkle::{self, Hash32};
use crate::metainfo::{Metainfo, MetainfoError, Version};

#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub version: Version,
    pub trackers: Vec<String>,
    pub web_seeds: Vec<String>,
    /// None: chosen by size, 256 KiB to 1 MiB.
    pub piece_length: Option<u64>,
    pub private: bool,
    pub comment: Option<String>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            version: Version::Hybrid,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            piece_length: None,
            private: false,
            comment: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} holds no files to share")]
    Empty(PathBuf),
    #[error("{0} has no usable file name")]
    NoName(PathBuf),
    #[error("piece length {0} is not a power of two of at least 16 KiB")]
    BadPieceLength(u64),
    #[error("the torrent made is invalid: {0}")]
    Invalid(#[from] MetainfoError),
}

/// Piece length for a total size: about 1000-2000 pieces, within 256 KiB..=1 MiB.
pub fn auto_piece_length(total: u64) -> u64 {
    (total / 1500)
        .next_power_of_two()
        .clamp(256 * 1024, 1024 * 1024)
}

struct Source {
    /// Components below the torrent's root (empty for a single-file torrent).
    rel: Vec<String>,
    path: PathBuf,
    length: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn collect(root: &Path) -> Result<Vec<Source>, CreateError> {
    let meta = std::fs::metadata(root).map_err(io(root))?;
    if meta.is_file() {
        return Ok(vec![Source {
            rel: Vec::new(),
            path: root.to_path_buf(),
            length: meta.len(),
        }]);
    }
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let ft = entry.file_type().map_err(io(&path))?;
            let mut child = rel.clone();
            child.push(name);
            if ft.is_dir() {
                stack.push((path, child));
            } else if ft.is_file() {
                let length = entry.metadata().map_err(io(&path))?.len();
                out.push(Source {
                    rel: child,
                    path,
                    length,
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Hashes of one file: its v2 piece layer and root, and the v1 pieces it covers.
struct FileHashes {
    layer: Vec<Hash32>,
    root: Option<Hash32>,
}

/// Creates the torrent for `path` (reading every byte once).
pub fn create(path: &Path, opts: &CreateOptions) -> Result<Metainfo, CreateError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| CreateError::NoName(path.to_path_buf()))?;
    let files = collect(path)?;
    let total: u64 = files.iter().map(|f| f.length).sum();
    if files.is_empty() || total == 0 {
        return Err(CreateError::Empty(path.to_path_buf()));
    }
    let piece_length = opts
        .piece_length
        .unwrap_or_else(|| auto_piece_length(total));
    if !piece_length.is_power_of_two() || piece_length < merkle::BLOCK {
        return Err(CreateError::BadPieceLength(piece_length));
    }
    let v1 = opts.version != Version::V2;
    let v2 = opts.version != Version::V1;
    let aligned = v2;

    let mut v1_pieces: Vec<u8> = Vec::new();
    let mut file_hashes = Vec::with_capacity(files.len());
    // v1 pieces span files unless files are aligned; `carry` holds a partial piece.
    let mut carry: Vec<u8> = Vec::with_capacity(piece_length as usize);
    let mut buf = vec![0u8; piece_length as usize];
    let count = files.len();
    for (i, f) in files.iter().enumerate() {
        let mut file = File::open(&f.path).map_err(io(&f.path))?;
        let mut remaining = f.length;
        let mut layer = Vec::new();
        let mut leaves = Vec::new();
        while remaining > 0 {
            let n = remaining.min(piece_length) as usize;
            file.read_exact(&mut buf[..n]).map_err(io(&f.path))?;
            remaining -= n as u64;
            let chunk = &buf[..n];
            if v2 {
                if f.length <= piece_length {
                    leaves = merkle::block_hashes(chunk);
                } else {
                    layer.push(merkle::piece_hash(chunk, piece_length));
                }
            }
            if v1 {
                if aligned {
                    let mut h = Sha1::new();
                    h.update(chunk);
                    let last_of_torrent = i + 1 == count && remaining == 0;
                    if n < piece_length as usize && !last_of_torrent {
                        h.update(vec![0u8; piece_length as usize - n]);
                    }
                    v1_pieces.extend_from_slice(&h.finalize());
                } else {
                    let mut rest = chunk;
                    while !rest.is_empty() {
                        let take = (piece_length as usize - carry.len()).min(rest.len());
                        carry.extend_from_slice(&rest[..take]);
                        rest = &rest[take..];
                        if carry.len() == piece_length as usize {
                            v1_pieces.extend_from_slice(&Sha1::digest(&carry));
                            carry.clear();
                        }
                    }
                }
            }
        }
        let root = if !v2 || f.length == 0 {
            None
        } else if f.length <= piece_length {
            Some(merkle::root_padded(
                &leaves,
                leaves.len().next_power_of_two(),
                [0u8; 32],
            ))
        } else {
            Some(merkle::root_from_layer(&layer, piece_length))
        };
        file_hashes.push(FileHashes { layer, root });
    }
    if !carry.is_empty() {
        v1_pieces.extend_from_slice(&Sha1::digest(&carry));
    }

    let single = files.len() == 1 && files[0].rel.is_empty();
    let mut info: BTreeMap<Vec<u8>, BValue> = BTreeMap::new();
    info.insert(b"name".to_vec(), BValue::str(&name));
    info.insert(b"piece length".to_vec(), BValue::Int(piece_length as i64));
    if opts.private {
        info.insert(b"private".to_vec(), BValue::Int(1));
    }
    if v1 {
        info.insert(b"pieces".to_vec(), BValue::Bytes(v1_pieces));
        if single {
            info.insert(b"length".to_vec(), BValue::Int(total as i64));
        } else {
            let mut list = Vec::new();
            for (i, f) in files.iter().enumerate() {
                list.push(dict([
                    ("length", BValue::Int(f.length as i64)),
                    (
                        "path",
                        BValue::List(f.rel.iter().map(|c| BValue::str(c)).collect()),
                    ),
                ]));
                let gap = f.length.next_multiple_of(piece_length) - f.length;
                if aligned && i + 1 < count && gap > 0 && f.length > 0 {
                    list.push(dict([
                        ("attr", BValue::str("p")),
                        ("length", BValue::Int(gap as i64)),
                        (
                            "path",
                            BValue::List(vec![BValue::str(".pad"), BValue::str(&gap.to_string())]),
                        ),
                    ]));
                }
            }
            info.insert(b"files".to_vec(), BValue::List(list));
        }
    }
    let mut layers = BTreeMap::new();
    if v2 {
        info.insert(b"meta version".to_vec(), BValue::Int(2));
        let mut tree = BTreeMap::new();
        for (f, h) in files.iter().zip(&file_hashes) {
            let rel: Vec<String> = if single {
                vec![name.clone()]
            } else {
                f.rel.clone()
            };
            let mut leaf = BTreeMap::new();
            leaf.insert(b"length".to_vec(), BValue::Int(f.length as i64));
            if let Some(root) = h.root {
                leaf.insert(b"pieces root".to_vec(), BValue::Bytes(root.to_vec()));
                if f.length > piece_length {
                    layers.insert(root.to_vec(), BValue::Bytes(h.layer.concat()));
                }
            }
            insert_tree(&mut tree, &rel, BValue::Dict(leaf));
        }
        info.insert(b"file tree".to_vec(), tree_value(tree));
    }
    let info_bytes = BValue::Dict(info).encode();
    let mut top = BTreeMap::new();
    top.insert(b"info".to_vec(), BValue::Raw(info_bytes));
    top.insert(
        b"created by".to_vec(),
        BValue::str(concat!("nodus/", env!("CARGO_PKG_VERSION"))),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    top.insert(b"creation date".to_vec(), BValue::Int(now));
    if let Some(c) = &opts.comment {
        top.insert(b"comment".to_vec(), BValue::str(c));
    }
    if let Some(first) = opts.trackers.first() {
        top.insert(b"announce".to_vec(), BValue::str(first));
        top.insert(
            b"announce-list".to_vec(),
            BValue::List(
                opts.trackers
                    .iter()
                    .map(|t| BValue::List(vec![BValue::str(t)]))
                    .collect(),
            ),
        );
    }
    if !opts.web_seeds.is_empty() {
        top.insert(
            b"url-list".to_vec(),
            BValue::List(opts.web_seeds.iter().map(|u| BValue::str(u)).collect()),
        );
    }
    if !layers.is_empty() {
        top.insert(b"piece layers".to_vec(), BValue::Dict(layers));
    }
    Ok(Metainfo::from_bytes(&BValue::Dict(top).encode())?)
}

/// A directory level of a v2 file tree under construction.
enum Node {
    Dir(BTreeMap<String, Node>),
    File(BValue),
}

fn insert_tree(tree: &mut BTreeMap<String, Node>, rel: &[String], leaf: BValue) {
    let Some((first, rest)) = rel.split_first() else {
        return;
    };
    if rest.is_empty() {
        tree.insert(first.clone(), Node::File(leaf));
        return;
    }
    let entry = tree
        .entry(first.clone())
        .or_insert_with(|| Node::Dir(BTreeMap::new()));
    if let Node::Dir(sub) = entry {
        insert_tree(sub, rest, leaf);
    }
}

fn tree_value(tree: BTreeMap<String, Node>) -> BValue {
    BValue::Dict(
        tree.into_iter()
            .map(|(k, n)| {
                let v = match n {
                    Node::Dir(sub) => tree_value(sub),
                    Node::File(leaf) => {
                        let mut m = BTreeMap::new();
                        m.insert(Vec::new(), leaf);
                        BValue::Dict(m)
                    }
                };
                (k.into_bytes(), v)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17 point 14: links are left out of every format alike, so a hybrid share of
    /// a directory holding one parses, and lists the same files as a v1 share.
    #[test]
    fn links_are_left_out_of_every_format_alike() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("album");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.bin"), vec![1u8; 300_000]).unwrap();
        std::fs::write(root.join("sub/b.bin"), vec![2u8; 70_000]).unwrap();
        std::os::unix::fs::symlink(root.join("a.bin"), root.join("link-to-file")).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), root.join("link-to-dir")).unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("dangling")).unwrap();
        let mut lists = Vec::new();
        for version in [Version::Hybrid, Version::V1, Version::V2] {
            let opts = CreateOptions {
                version,
                ..Default::default()
            };
            let meta = create(&root, &opts).unwrap();
            let parsed = Metainfo::from_bytes(&meta.to_bytes()).unwrap();
            let files: Vec<Vec<String>> = parsed
                .info
                .files
                .iter()
                .filter(|f| !f.pad)
                .map(|f| f.path.clone())
                .collect();
            lists.push(files);
        }
        assert_eq!(
            lists[0],
            [vec!["album", "a.bin"], vec!["album", "sub", "b.bin"]]
        );
        assert_eq!(lists[0], lists[1]);
        assert_eq!(lists[0], lists[2]);
    }
}
