//! Metainfo (.torrent) files: v1 (BEP 3), v2 (BEP 52) and hybrid, parsed into one layout.
//!
//! Every torrent is mapped onto one *piece space*: files laid end to end, each file of a
//! v2 or hybrid torrent starting on a piece boundary. The gaps are pad entries (explicit
//! in hybrid torrents, added here for pure v2 ones); they read as zeros and are never
//! stored. Piece `i` covers bytes `[i * piece_length, ...)` of that space, which is how
//! the wire protocol numbers pieces in all three versions.
//!
//! The parser agrees with libtorrent on what loads and what is refused (tested against
//! libtorrent's own test torrents), and names its errors after libtorrent's. File paths
//! are sanitized so that no torrent can write outside its download directory.

use std::collections::{HashMap, HashSet};

use sha1::{Digest, Sha1};

use crate::bencode::{self, BencodeError, Dict, Value};
use crate::merkle::{self, Hash32};

pub type Hash20 = [u8; 20];

/// Most pieces in one torrent (libtorrent's default limit).
pub const MAX_PIECES: u64 = 0x20_0000;
/// A file (with its alignment padding) must be smaller than this.
pub const MAX_FILE_SIZE: u64 = 1 << 44;
/// Files that may share one name before the torrent is refused (each is renamed).
pub const MAX_DUPLICATE_NAMES: usize = 100;
/// Largest piece accepted (libtorrent refuses beyond 512 MiB as well).
pub const MAX_PIECE_LENGTH: u64 = 512 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    #[error("not a torrent: {0}")]
    Bencode(#[from] BencodeError),
    #[error("not a torrent: the file is not a bencoded dictionary")]
    NotADict,
    #[error("the torrent has no info dictionary")]
    MissingInfo,
    #[error("the torrent has no valid piece length")]
    MissingPieceLength,
    #[error("the torrent has no valid name")]
    MissingName,
    #[error("a file path in the torrent is invalid")]
    InvalidName,
    #[error("a file length in the torrent is invalid")]
    InvalidLength,
    #[error("the torrent has no piece hashes")]
    MissingPieces,
    #[error("the torrent's piece hashes do not match its size")]
    InvalidHashes,
    #[error("the torrent has more than {MAX_PIECES} pieces")]
    TooManyPieces,
    #[error("the torrent lists no files")]
    NoFiles,
    #[error("the torrent's v1 and v2 file lists disagree")]
    InconsistentFiles,
    #[error("a file entry of the v2 file tree is malformed")]
    FileParseFailed,
    #[error("the torrent's v2 file tree is nested too deep")]
    DepthExceeded,
    #[error("a v2 file has no valid pieces root")]
    MissingPiecesRoot,
    #[error("a v2 piece layer is invalid")]
    InvalidPieceLayer,
    #[error("a v2 file is marked as padding")]
    InvalidPadFile,
    #[error("the v2 file tree is not in sorted order")]
    InvalidBencoding,
    #[error("more than {MAX_DUPLICATE_NAMES} files share one name")]
    TooManyDuplicateNames,
}

impl MetainfoError {
    /// libtorrent's name for the same refusal.
    pub fn libtorrent_code(&self) -> &'static str {
        use MetainfoError::*;
        match self {
            Bencode(BencodeError::TooDeep) | DepthExceeded => "depth_exceeded",
            Bencode(_) | InvalidBencoding => "invalid_bencoding",
            NotADict => "torrent_is_no_dict",
            MissingInfo => "torrent_missing_info",
            MissingPieceLength => "torrent_missing_piece_length",
            MissingName => "torrent_missing_name",
            InvalidName => "torrent_invalid_name",
            InvalidLength => "torrent_invalid_length",
            MissingPieces => "torrent_missing_pieces",
            InvalidHashes => "torrent_invalid_hashes",
            TooManyPieces => "too_many_pieces_in_torrent",
            NoFiles => "no_files_in_torrent",
            InconsistentFiles => "torrent_inconsistent_files",
            FileParseFailed => "torrent_file_parse_failed",
            MissingPiecesRoot => "torrent_missing_pieces_root",
            InvalidPieceLayer => "torrent_invalid_piece_layer",
            InvalidPadFile => "torrent_invalid_pad_file",
            TooManyDuplicateNames => "too_many_duplicate_filenames",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
    Hybrid,
}

/// The infohashes of a torrent: SHA-1 of the info dictionary (v1), SHA-256 (v2), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InfoHashes {
    pub v1: Option<Hash20>,
    pub v2: Option<Hash32>,
}

impl InfoHashes {
    pub fn of_info(info_bytes: &[u8], version: Version) -> InfoHashes {
        InfoHashes {
            v1: (version != Version::V2).then(|| Sha1::digest(info_bytes).into()),
            v2: (version != Version::V1).then(|| merkle::sha256(info_bytes)),
        }
    }

    /// The 20 bytes that name the torrent on the wire: the v1 hash, else the v2 hash
    /// truncated (BEP 52).
    pub fn wire_id(&self) -> Hash20 {
        match (self.v1, self.v2) {
            (Some(v1), _) => v1,
            (None, Some(v2)) => truncate(&v2),
            (None, None) => [0; 20],
        }
    }

    /// Whether `id` (from a handshake) names this torrent.
    pub fn matches(&self, id: &Hash20) -> bool {
        self.v1.as_ref() == Some(id) || self.v2.map(|h| truncate(&h)).as_ref() == Some(id)
    }

    pub fn v1_hex(&self) -> Option<String> {
        self.v1.map(hex::encode)
    }
    pub fn v2_hex(&self) -> Option<String> {
        self.v2.map(hex::encode)
    }
}

pub fn truncate(h: &Hash32) -> Hash20 {
    let mut out = [0u8; 20];
    out.copy_from_slice(&h[..20]);
    out
}

/// One entry of the piece space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path below the download directory, sanitized (multi-file torrents start with the
    /// torrent's name).
    pub path: Vec<String>,
    pub length: u64,
    /// Where the file starts in the piece space.
    pub offset: u64,
    /// Padding: zeros, never stored.
    pub pad: bool,
    pub executable: bool,
    /// A symlink (never created; its bytes are not stored).
    pub symlink: bool,
    pub pieces_root: Option<Hash32>,
}

impl FileEntry {
    /// Whether its bytes live on disk.
    pub fn stored(&self) -> bool {
        !self.pad && !self.symlink
    }
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// The parsed info dictionary.
#[derive(Debug, Clone)]
pub struct Info {
    pub name: String,
    pub piece_length: u64,
    pub files: Vec<FileEntry>,
    /// Length of the piece space (files and padding).
    pub total_length: u64,
    pub num_pieces: u32,
    pub v1_pieces: Vec<Hash20>,
    pub version: Version,
    pub private: bool,
    pub multi_file: bool,
}

impl Info {
    /// Length of piece `index` (the last may be short).
    pub fn piece_len(&self, index: u32) -> u64 {
        let start = index as u64 * self.piece_length;
        (self.total_length - start).min(self.piece_length)
    }

    /// Bytes of real file content (padding excluded).
    pub fn content_length(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.stored())
            .map(|f| f.length)
            .sum()
    }
}

/// A parsed torrent file.
#[derive(Debug, Clone)]
pub struct Metainfo {
    pub info: Info,
    /// The info dictionary exactly as bencoded in the file (what infohashes hash).
    pub info_bytes: Vec<u8>,
    pub hashes: InfoHashes,
    /// v2 piece layers by pieces root (may be missing for some files).
    pub piece_layers: HashMap<Hash32, Vec<Hash32>>,
    /// Tiers of tracker URLs.
    pub trackers: Vec<Vec<String>>,
    pub web_seeds: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

impl Metainfo {
    pub fn from_bytes(data: &[u8]) -> Result<Metainfo, MetainfoError> {
        let (top, _) = bencode::decode_prefix(data)?;
        let top = top.as_dict().ok_or(MetainfoError::NotADict)?;
        let info_dict = top.dict("info").ok_or(MetainfoError::MissingInfo)?;
        let info = parse_info(info_dict)?;
        let piece_layers = match (&info.version, top.get("piece layers")) {
            (Version::V1, _) | (_, None) => HashMap::new(),
            (_, Some(v)) => parse_piece_layers(&info, v)?,
        };
        let mut trackers: Vec<Vec<String>> = Vec::new();
        if let Some(list) = top.list("announce-list") {
            for tier in list {
                let urls: Vec<String> = tier
                    .as_list()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|u| u.as_str())
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect();
                if !urls.is_empty() {
                    trackers.push(urls);
                }
            }
        }
        if trackers.is_empty()
            && let Some(a) = top.str("announce").map(str::trim)
            && !a.is_empty()
        {
            trackers.push(vec![a.to_string()]);
        }
        let mut web_seeds = Vec::new();
        match top.get("url-list") {
            Some(Value::Bytes(b)) => {
                web_seeds.extend(std::str::from_utf8(b).ok().map(String::from))
            }
            Some(Value::List(l)) => {
                web_seeds.extend(l.iter().filter_map(|u| u.as_str()).map(String::from))
            }
            _ => {}
        }
        web_seeds.retain(|u| !u.trim().is_empty());
        web_seeds.dedup();
        let hashes = InfoHashes::of_info(info_dict.raw, info.version);
        Ok(Metainfo {
            info,
            info_bytes: info_dict.raw.to_vec(),
            hashes,
            piece_layers,
            trackers,
            web_seeds,
            comment: top.str("comment").map(String::from),
            created_by: top.str("created by").map(String::from),
            creation_date: top.int("creation date"),
        })
    }

    /// A torrent known only by its info dictionary (from a magnet link's metadata
    /// exchange).
    pub fn from_info_bytes(info_bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let v = bencode::decode_exact(info_bytes)?;
        let d = v.as_dict().ok_or(MetainfoError::MissingInfo)?;
        let info = parse_info(d)?;
        let hashes = InfoHashes::of_info(info_bytes, info.version);
        Ok(Metainfo {
            info,
            info_bytes: info_bytes.to_vec(),
            hashes,
            piece_layers: HashMap::new(),
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
        })
    }

    /// The v1 SHA-1 or v2 piece-layer hash piece `index` must match, if known.
    pub fn expected_piece_hash(&self, index: u32) -> Option<PieceHash> {
        if let Some(h) = self.info.v1_pieces.get(index as usize) {
            return Some(PieceHash::V1(*h));
        }
        let start = index as u64 * self.info.piece_length;
        let file = self
            .info
            .files
            .iter()
            .find(|f| f.stored() && f.offset <= start && start < f.end())?;
        let root = file.pieces_root?;
        // v2 hashes cover the file's bytes only, not the padding after it.
        let len = (file.end() - start).min(self.info.piece_length) as usize;
        if file.length <= self.info.piece_length {
            return Some(PieceHash::V2Root(root, len));
        }
        let layer = self.piece_layers.get(&root)?;
        let i = ((start - file.offset) / self.info.piece_length) as usize;
        layer.get(i).map(|h| PieceHash::V2Layer(*h, len))
    }

    /// The torrent file's bytes (info kept verbatim).
    pub fn to_bytes(&self) -> Vec<u8> {
        use crate::bencode::BValue;
        let mut top = std::collections::BTreeMap::new();
        top.insert(b"info".to_vec(), BValue::Raw(self.info_bytes.clone()));
        if let Some(first) = self.trackers.first().and_then(|t| t.first()) {
            top.insert(b"announce".to_vec(), BValue::str(first));
            top.insert(
                b"announce-list".to_vec(),
                BValue::List(
                    self.trackers
                        .iter()
                        .map(|t| BValue::List(t.iter().map(|u| BValue::str(u)).collect()))
                        .collect(),
                ),
            );
        }
        if !self.web_seeds.is_empty() {
            top.insert(
                b"url-list".to_vec(),
                BValue::List(self.web_seeds.iter().map(|u| BValue::str(u)).collect()),
            );
        }
        if let Some(c) = &self.comment {
            top.insert(b"comment".to_vec(), BValue::str(c));
        }
        if let Some(c) = &self.created_by {
            top.insert(b"created by".to_vec(), BValue::str(c));
        }
        if let Some(d) = self.creation_date {
            top.insert(b"creation date".to_vec(), BValue::Int(d));
        }
        if !self.piece_layers.is_empty() {
            top.insert(
                b"piece layers".to_vec(),
                BValue::Dict(
                    self.piece_layers
                        .iter()
                        .map(|(k, v)| (k.to_vec(), BValue::Bytes(v.concat())))
                        .collect(),
                ),
            );
        }
        BValue::Dict(top).encode()
    }
}

/// What a piece's data must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceHash {
    V1(Hash20),
    /// An entry of a v2 piece layer, over the first `usize` bytes of the piece.
    V2Layer(Hash32, usize),
    /// A v2 file that fits in one piece: its pieces root, over its `usize` bytes.
    V2Root(Hash32, usize),
}

impl PieceHash {
    pub fn verify(&self, data: &[u8], piece_length: u64) -> bool {
        match self {
            PieceHash::V1(h) => <[u8; 20]>::from(Sha1::digest(data)) == *h,
            PieceHash::V2Layer(h, len) => {
                data.get(..*len)
                    .is_some_and(|d| merkle::piece_hash(d, piece_length) == *h)
                    && data[*len..].iter().all(|&b| b == 0)
            }
            PieceHash::V2Root(h, len) => {
                data.get(..*len)
                    .is_some_and(|d| merkle::root_of_small_file(d) == *h)
                    && data[*len..].iter().all(|&b| b == 0)
            }
        }
    }
}

fn parse_info(d: &Dict<'_>) -> Result<Info, MetainfoError> {
    let name = match d.get("name.utf-8").or_else(|| d.get("name")) {
        Some(Value::Bytes(b)) if !b.contains(&0) => sanitize_component(&String::from_utf8_lossy(b)),
        _ => return Err(MetainfoError::MissingName),
    };
    let v2 = d.int("meta version") == Some(2) && d.get("file tree").is_some();
    let has_v1 = d.get("pieces").is_some() || !v2;
    let version = match (has_v1, v2) {
        (true, true) => Version::Hybrid,
        (false, true) => Version::V2,
        _ => Version::V1,
    };
    let piece_length = match d.int("piece length") {
        Some(p) if p > 0 && (p as u64) <= MAX_PIECE_LENGTH => p as u64,
        _ => return Err(MetainfoError::MissingPieceLength),
    };
    if version != Version::V1 && (!piece_length.is_power_of_two() || piece_length < merkle::BLOCK) {
        return Err(MetainfoError::MissingPieceLength);
    }

    let v2_files = if v2 {
        let tree = d.dict("file tree").ok_or(MetainfoError::FileParseFailed)?;
        Some(parse_file_tree(tree, &name, piece_length)?)
    } else {
        None
    };
    let (files, multi_file) = if has_v1 {
        parse_v1_files(d, &name)?
    } else {
        let v2 = v2_files.clone().unwrap_or_default();
        let multi = v2.iter().filter(|f| !f.pad).count() > 1
            || v2.first().is_some_and(|f| f.path.len() > 1);
        (v2, multi)
    };
    if let Some(v2) = &v2_files
        && has_v1
    {
        let real = |fs: &[FileEntry]| -> Vec<(u64, u64, Vec<String>)> {
            fs.iter()
                .filter(|f| !f.pad && f.length > 0)
                .map(|f| (f.offset, f.length, f.path.clone()))
                .collect()
        };
        if real(&files) != real(v2) {
            return Err(MetainfoError::InconsistentFiles);
        }
    }
    let mut files = files;
    let total_length = files.last().map(FileEntry::end).unwrap_or(0);
    if files.iter().all(|f| f.pad || f.length == 0) {
        return Err(MetainfoError::InvalidLength);
    }
    let num_pieces = total_length.div_ceil(piece_length);
    if num_pieces > MAX_PIECES {
        return Err(MetainfoError::TooManyPieces);
    }
    let mut v1_pieces = Vec::new();
    if has_v1 {
        let pieces = d.bytes("pieces").ok_or(MetainfoError::MissingPieces)?;
        if pieces.len() % 20 != 0 || (pieces.len() / 20) as u64 != num_pieces {
            return Err(MetainfoError::InvalidHashes);
        }
        v1_pieces = pieces
            .chunks_exact(20)
            .map(|c| {
                let mut h = [0u8; 20];
                h.copy_from_slice(c);
                h
            })
            .collect();
        // A hybrid's v1 list carries no pieces roots: take them from the v2 tree.
        if let Some(v2) = &v2_files {
            let roots: HashMap<u64, Option<Hash32>> =
                v2.iter().map(|f| (f.offset, f.pieces_root)).collect();
            for f in files.iter_mut().filter(|f| !f.pad) {
                f.pieces_root = roots.get(&f.offset).copied().flatten();
            }
        }
    }
    rename_duplicates(&mut files)?;
    Ok(Info {
        name,
        piece_length,
        files,
        total_length,
        num_pieces: num_pieces as u32,
        v1_pieces,
        version,
        private: d.int("private") == Some(1),
        multi_file,
    })
}

fn parse_v1_files(d: &Dict<'_>, name: &str) -> Result<(Vec<FileEntry>, bool), MetainfoError> {
    let Some(list) = d.get("files") else {
        let length = match d.int("length") {
            Some(l) if l >= 0 && (l as u64) < MAX_FILE_SIZE => l as u64,
            _ => return Err(MetainfoError::InvalidLength),
        };
        let entry = FileEntry {
            path: vec![name.to_string()],
            length,
            offset: 0,
            pad: false,
            executable: false,
            symlink: false,
            pieces_root: None,
        };
        return Ok((vec![entry], false));
    };
    let list = list.as_list().ok_or(MetainfoError::NoFiles)?;
    if list.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    let mut files = Vec::with_capacity(list.len());
    let mut offset = 0u64;
    for f in list {
        let f = f.as_dict().ok_or(MetainfoError::FileParseFailed)?;
        let attr = f.bytes("attr").unwrap_or_default();
        let pad = attr.contains(&b'p');
        let symlink = attr.contains(&b'l');
        let length = match f.get("length") {
            Some(Value::Int(l)) if *l >= 0 && (*l as u64) < MAX_FILE_SIZE => *l as u64,
            None if symlink => 0,
            _ => return Err(MetainfoError::InvalidLength),
        };
        let path = match f.list("path.utf-8").or_else(|| f.list("path")) {
            Some(raw) => std::iter::once(name.to_string())
                .chain(sanitize_path(raw)?)
                .collect(),
            None if pad => vec![".pad".to_string(), length.to_string()],
            None => return Err(MetainfoError::MissingName),
        };
        if symlink {
            let target = f.list("symlink path").ok_or(MetainfoError::InvalidName)?;
            sanitize_path(target)?;
        }
        files.push(FileEntry {
            path,
            length,
            offset,
            pad,
            executable: attr.contains(&b'x'),
            symlink,
            pieces_root: None,
        });
        offset = offset
            .checked_add(length)
            .ok_or(MetainfoError::InvalidLength)?;
        if offset >= MAX_FILE_SIZE * 16 {
            return Err(MetainfoError::InvalidLength);
        }
    }
    Ok((files, true))
}

/// Walks a v2 file tree in order; files are aligned to pieces by pad entries.
fn parse_file_tree(
    tree: &Dict<'_>,
    name: &str,
    piece_length: u64,
) -> Result<Vec<FileEntry>, MetainfoError> {
    let mut leaves = Vec::new();
    walk_tree(tree, &mut Vec::new(), &mut leaves, 0)?;
    if leaves.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    // A single file at the top of the tree is stored under its own name.
    let single = leaves.len() == 1 && leaves[0].0.len() == 1;
    let mut files = Vec::new();
    let mut offset = 0u64;
    let count = leaves.len();
    for (i, (path, length, root, executable, symlink)) in leaves.into_iter().enumerate() {
        let path = if single {
            path
        } else {
            std::iter::once(name.to_string()).chain(path).collect()
        };
        files.push(FileEntry {
            path,
            length,
            offset,
            pad: false,
            executable,
            symlink,
            pieces_root: root,
        });
        offset += length;
        let aligned = offset.div_ceil(piece_length) * piece_length;
        if aligned != offset && i + 1 < count && length > 0 {
            files.push(FileEntry {
                path: vec![".pad".into(), (aligned - offset).to_string()],
                length: aligned - offset,
                offset,
                pad: true,
                executable: false,
                symlink: false,
                pieces_root: None,
            });
            offset = aligned;
        }
        if offset / piece_length > MAX_PIECES {
            return Err(MetainfoError::TooManyPieces);
        }
    }
    Ok(files)
}

type Leaf = (Vec<String>, u64, Option<Hash32>, bool, bool);

fn walk_tree(
    dir: &Dict<'_>,
    prefix: &mut Vec<String>,
    out: &mut Vec<Leaf>,
    depth: usize,
) -> Result<(), MetainfoError> {
    if depth > 100 {
        return Err(MetainfoError::DepthExceeded);
    }
    if !dir.sorted {
        return Err(MetainfoError::InvalidBencoding);
    }
    for (key, value) in &dir.entries {
        let child = value.as_dict().ok_or(MetainfoError::FileParseFailed)?;
        if key.is_empty() {
            return Err(MetainfoError::FileParseFailed);
        }
        let component = sanitize_component(&String::from_utf8_lossy(key));
        prefix.push(component);
        if let Some(leaf) = child.get("") {
            let leaf = leaf.as_dict().ok_or(MetainfoError::FileParseFailed)?;
            if child.entries.len() != 1 {
                return Err(MetainfoError::FileParseFailed);
            }
            // libtorrent's bound: fewer than 2^30 - 1 blocks of 16 KiB in one file.
            let length = match leaf.int("length") {
                Some(l) if l >= 0 && (l as u64 / merkle::BLOCK) < (i32::MAX / 2) as u64 => l as u64,
                _ => return Err(MetainfoError::InvalidLength),
            };
            let attr = leaf.bytes("attr").unwrap_or_default();
            if attr.contains(&b'p') {
                return Err(MetainfoError::InvalidPadFile);
            }
            let symlink = attr.contains(&b'l');
            let root = match leaf.bytes("pieces root") {
                Some(r) if r.len() == 32 && r.iter().any(|&b| b != 0) => {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(r);
                    Some(h)
                }
                _ if length == 0 => None,
                _ if symlink => {
                    let target = leaf
                        .list("symlink path")
                        .ok_or(MetainfoError::MissingPiecesRoot)?;
                    sanitize_path(target)?;
                    None
                }
                _ => return Err(MetainfoError::MissingPiecesRoot),
            };
            out.push((prefix.clone(), length, root, attr.contains(&b'x'), symlink));
        } else {
            walk_tree(child, prefix, out, depth + 1)?;
        }
        prefix.pop();
    }
    Ok(())
}

fn parse_piece_layers(
    info: &Info,
    layers: &Value<'_>,
) -> Result<HashMap<Hash32, Vec<Hash32>>, MetainfoError> {
    let layers = layers.as_dict().ok_or(MetainfoError::InvalidPieceLayer)?;
    let by_root: HashMap<Hash32, &FileEntry> = info
        .files
        .iter()
        .filter_map(|f| f.pieces_root.map(|r| (r, f)))
        .collect();
    let mut out = HashMap::new();
    for (key, value) in &layers.entries {
        let root: Hash32 = (*key)
            .try_into()
            .map_err(|_| MetainfoError::InvalidPieceLayer)?;
        let file = by_root.get(&root).ok_or(MetainfoError::InvalidPieceLayer)?;
        let bytes = value.as_bytes().ok_or(MetainfoError::InvalidPieceLayer)?;
        if bytes.len() % 32 != 0 {
            return Err(MetainfoError::InvalidPieceLayer);
        }
        let expected = file.length.div_ceil(info.piece_length) as usize;
        if file.length <= info.piece_length || bytes.len() / 32 != expected {
            return Err(MetainfoError::InvalidPieceLayer);
        }
        let hashes: Vec<Hash32> = bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        if merkle::root_from_layer(&hashes, info.piece_length) != root {
            return Err(MetainfoError::InvalidPieceLayer);
        }
        out.insert(root, hashes);
    }
    Ok(out)
}

/// Longest file name Linux filesystems take, in bytes.
const MAX_COMPONENT: usize = 255;

/// A name cut to [`MAX_COMPONENT`] bytes at a character boundary, its extension kept
/// (as libtorrent does), so a long name in a torrent becomes a file instead of a disk
/// error.
fn fit_component(s: String) -> String {
    if s.len() <= MAX_COMPONENT {
        return s;
    }
    let (stem, ext) = match s.rfind('.') {
        Some(i) if i > 0 && s.len() - i <= 16 => (&s[..i], &s[i..]),
        _ => (s.as_str(), ""),
    };
    let mut end = MAX_COMPONENT - ext.len();
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ext}", &stem[..end])
}

/// One path component made safe: no separators, no `.`/`..`, no control characters, at
/// most 255 bytes.
pub fn sanitize_component(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => "_".to_string(),
        _ => fit_component(cleaned),
    }
}

/// A path list made safe: empty, `.` and `..` components are dropped.
fn sanitize_path(list: &[Value<'_>]) -> Result<Vec<String>, MetainfoError> {
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let b = c.as_bytes().ok_or(MetainfoError::InvalidName)?;
        let s = String::from_utf8_lossy(b);
        if s.is_empty() || s == "." || s == ".." {
            continue;
        }
        out.push(sanitize_component(&s));
    }
    if out.is_empty() {
        out.push("_".to_string());
    }
    Ok(out)
}

/// Gives every stored file a unique path, as libtorrent does: `a.txt`, `a.1.txt`, ...
fn rename_duplicates(files: &mut [FileEntry]) -> Result<(), MetainfoError> {
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    for f in files.iter_mut().filter(|f| !f.pad) {
        if seen.insert(f.path.clone()) {
            continue;
        }
        let Some(last) = f.path.last().cloned() else {
            continue;
        };
        let (stem, ext) = match last.rfind('.') {
            Some(i) if i > 0 => (&last[..i], &last[i..]),
            _ => (last.as_str(), ""),
        };
        let mut renamed = false;
        for n in 1..=MAX_DUPLICATE_NAMES {
            let mut p = f.path.clone();
            if let Some(l) = p.last_mut() {
                *l = format!("{stem}.{n}{ext}");
            }
            if seen.insert(p.clone()) {
                f.path = p;
                renamed = true;
                break;
            }
        }
        if !renamed {
            return Err(MetainfoError::TooManyDuplicateNames);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sanitize_component;

    /// Issue 17 point 17: a name over 255 bytes is cut to fit, its extension kept,
    /// never in the middle of a character.
    #[test]
    fn long_names_are_cut_to_fit_the_filesystem() {
        let long = format!("{}.mkv", "a".repeat(300));
        let cut = sanitize_component(&long);
        assert_eq!(cut.len(), 255);
        assert!(cut.ends_with(".mkv"));
        let wide = "é".repeat(200);
        let cut = sanitize_component(&wide);
        assert!(cut.len() <= 255 && cut.chars().all(|c| c == 'é'), "{cut}");
        assert_eq!(sanitize_component("short.txt"), "short.txt");
    }
}
