//! Web seeds (BEP 19): plain HTTP servers holding the torrent's files (the torrent's
//! `url-list`, or `ws=` in a magnet link), used as one more peer that has every piece.
//!
//! One task per URL asks the picker for blocks like a peer would, fetches the bytes of
//! a run of whole blocks with one ranged GET per file it spans, and hands them to the
//! same verify-and-store path as peer data. A server that fails is retried with a
//! growing pause; one whose data fails the hash check MAX_STRIKES times is dropped.

use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tokio::sync::watch;

use crate::bitfield::Bitfield;
use crate::metainfo::Metainfo;
use crate::picker::BlockRef;
use crate::torrent::Torrent;

/// Blocks asked of a web seed at once (16 KiB each: 4 MiB per round).
const BATCH_BLOCKS: usize = 256;
/// Failed requests in a row after which the server is given up.
const MAX_FAILURES: u32 = 8;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What a path segment may not hold raw in a URL.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The URL of file `path` (its components, the torrent's name first when multi-file)
/// on web seed `base` (BEP 19: a base ending in '/' is a directory).
pub fn file_url(base: &str, meta: &Metainfo, path: &[String]) -> String {
    if !meta.info.multi_file && !base.ends_with('/') {
        return base.to_string();
    }
    let mut url = base.trim_end_matches('/').to_string();
    for part in path {
        url.push('/');
        url.extend(utf8_percent_encode(part, SEGMENT));
    }
    url
}

/// One web seed until the torrent completes, stops, or the server is given up.
pub(crate) async fn run(t: Arc<Torrent>, url: String, mut shutdown: watch::Receiver<bool>) {
    let key = t.shared.next_key();
    t.add_web_seed(key, &url);
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() || t.web_seed_banned(key) {
            break;
        }
        let wait = match round(&t, key, &url).await {
            Round::Done => break,
            Round::Idle => Duration::from_secs(1),
            Round::Fetched => {
                failures = 0;
                continue;
            }
            Round::Failed(e) => {
                failures += 1;
                tracing::debug!(target: "nodus::torrent", %url, "web seed: {e}");
                if failures >= MAX_FAILURES {
                    tracing::warn!(target: "nodus::torrent", %url, "web seed given up after {failures} failures: {e}");
                    break;
                }
                Duration::from_secs(1 << failures.min(8))
            }
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    t.remove_web_seed(key);
}

enum Round {
    Done,
    Idle,
    Fetched,
    Failed(WebSeedError),
}

/// Why a web seed's answer was not used. Every kind makes the seed wait before it is
/// asked again; none stops the torrent.
#[derive(Debug, thiserror::Error)]
pub enum WebSeedError {
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status} to a range request")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{url}: {got} bytes where {want} were asked")]
    Length { url: String, got: u64, want: u64 },
    #[error("the torrent's files do not cover the range asked")]
    Uncovered,
}

async fn round(t: &Arc<Torrent>, key: u64, url: &str) -> Round {
    let Some(meta) = t.metadata() else {
        return Round::Idle;
    };
    if t.is_complete() {
        return Round::Done;
    }
    let all = Bitfield::full(meta.info.num_pieces);
    let mut blocks = t.pick(key, &all, BATCH_BLOCKS);
    if blocks.is_empty() {
        return Round::Idle;
    }
    blocks.sort_by_key(|b| (b.index, b.begin));
    let piece_len = meta.info.piece_length;
    let offset = |b: &BlockRef| b.index as u64 * piece_len + b.begin as u64;
    // Runs of blocks contiguous in the piece space, each fetched as one range.
    let mut runs: Vec<Vec<BlockRef>> = Vec::new();
    for b in blocks {
        match runs.last_mut() {
            Some(run)
                if run
                    .last()
                    .is_some_and(|l| offset(l) + l.length as u64 == offset(&b)) =>
            {
                run.push(b)
            }
            _ => runs.push(vec![b]),
        }
    }
    let mut runs = runs.into_iter();
    while let Some(run) = runs.next() {
        let start = offset(&run[0]);
        let len: u64 = run.iter().map(|b| b.length as u64).sum();
        let data = match fetch(t, &meta, url, start, len).await {
            Ok(d) => d,
            Err(e) => {
                t.release(key, run.into_iter().chain(runs.flatten()).collect());
                return Round::Failed(e);
            }
        };
        let mut at = 0usize;
        for b in run {
            let block = &data[at..at + b.length as usize];
            at += b.length as usize;
            if let Some(piece) = t.on_block(key, b.index, b.begin, block, None) {
                t.verify_and_store(piece).await;
            }
        }
    }
    Round::Fetched
}

/// The bytes of the piece space `[start, start + len)`: ranged GETs of the files it
/// spans, zeros for padding.
async fn fetch(
    t: &Torrent,
    meta: &Metainfo,
    url: &str,
    start: u64,
    len: u64,
) -> Result<Vec<u8>, WebSeedError> {
    let end = start + len;
    let mut out = Vec::with_capacity(len as usize);
    for f in &meta.info.files {
        let (fs, fe) = (f.offset, f.offset + f.length);
        if fe <= start || fs >= end || f.length == 0 {
            continue;
        }
        let (a, b) = (start.max(fs) - fs, end.min(fe) - fs);
        if f.pad {
            out.resize(out.len() + (b - a) as usize, 0);
            continue;
        }
        let u = file_url(url, meta, &f.path);
        let resp = t
            .shared
            .http
            .get(&u)
            .header(reqwest::header::RANGE, format!("bytes={a}-{}", b - 1))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|source| WebSeedError::Http {
                url: u.clone(),
                source,
            })?;
        let status = resp.status();
        let whole = status == reqwest::StatusCode::OK && a == 0 && b == f.length;
        if status != reqwest::StatusCode::PARTIAL_CONTENT && !whole {
            return Err(WebSeedError::Status { url: u, status });
        }
        if let Some(n) = resp.content_length().filter(|n| *n != b - a) {
            return Err(WebSeedError::Length {
                url: u,
                got: n,
                want: b - a,
            });
        }
        // Read as it comes, never past what was asked for: a server that sends no
        // Content-Length (or lies) cannot stream an unbounded body into memory.
        let want = b - a;
        let mut got = 0u64;
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(|source| WebSeedError::Http {
            url: u.clone(),
            source,
        })? {
            got += chunk.len() as u64;
            if got > want {
                return Err(WebSeedError::Length { url: u, got, want });
            }
            t.shared.down_limit.acquire(chunk.len()).await;
            out.extend_from_slice(&chunk);
        }
        if got != want {
            return Err(WebSeedError::Length { url: u, got, want });
        }
    }
    if out.len() as u64 != len {
        return Err(WebSeedError::Uncovered);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::create::{CreateOptions, create};

    #[test]
    fn urls_follow_bep_19() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("a b.iso");
        std::fs::write(&one, b"x").unwrap();
        let single = create(&one, &CreateOptions::default()).unwrap();
        let path = &single.info.files[0].path;
        assert_eq!(file_url("http://h/x.iso", &single, path), "http://h/x.iso");
        assert_eq!(
            file_url("http://h/pub/", &single, path),
            "http://h/pub/a%20b.iso"
        );
        let album = dir.path().join("album");
        std::fs::create_dir_all(album.join("disc#2")).unwrap();
        std::fs::write(album.join("disc#2/t?.flac"), b"y").unwrap();
        let multi = create(&album, &CreateOptions::default()).unwrap();
        let f = multi.info.files.iter().find(|f| !f.pad).unwrap();
        assert_eq!(
            file_url("http://h/pub", &multi, &f.path),
            "http://h/pub/album/disc%232/t%3F.flac"
        );
    }
}
