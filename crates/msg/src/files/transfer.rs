//! Moving a file between two nodes over `/nodus/file/1` (the protocol is in
//! [`crate::files`]): [`serve`] answers a peer that asks for a file it was offered,
//! [`download`] fetches one offered to us, resuming where its synced progress ended.
//!
//! Each side pipelines: the network task moves sealed chunks while a blocking thread
//! reads and seals (sender) or opens, writes and syncs (recipient), a few chunks apart.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream};
use nodus_net::NetworkHandle;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::Blobs;
use super::crypt::{CHUNK, FileCipher, TAG, chunk_len, chunks};
use crate::inbound::Peers;
use crate::service::{Input, Metrics};
use crate::wire::{self, FILE_PROTOCOL, FileHash, FileReply, FileRequest};

/// Chunks between syncs of a partial file (and progress reports): 4 MiB.
const SYNC_CHUNKS: u64 = 16;
/// Chunks in flight between the network task and the disk thread.
const PIPELINE: usize = 8;
/// A peer must ask, answer, or move the next chunk within this.
const STALL: Duration = Duration::from_secs(30);

/// Why a download stopped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    /// The link broke, the peer is away, a timeout: try again later from the progress.
    Retry(String),
    /// The sender said no (it did not offer this to us, or no longer has it).
    Refused(String),
    /// The sender sent what no honest sender sends: struck, and not asked again.
    Bad(String),
    /// This node's disk failed.
    Disk(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(e) => write!(f, "{e}"),
            Failure::Refused(e) => write!(f, "the sender refused: {e}"),
            Failure::Bad(e) => write!(f, "the sender's data is bad: {e}"),
            Failure::Disk(e) => write!(f, "disk: {e}"),
        }
    }
}

fn disk(e: std::io::Error) -> Failure {
    Failure::Disk(e.to_string())
}

/// A file to fetch: from whom, and how far a previous attempt got.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub hash: FileHash,
    pub from: PeerId,
    pub key: [u8; 32],
    pub size: u64,
    /// Bytes already synced in the partial file (a multiple of the chunk, or `size`).
    pub received: u64,
}

/// Fetches `job` and reports to the service: progress after each sync, then the end.
pub(crate) async fn download(
    net: NetworkHandle,
    blobs: Arc<Blobs>,
    job: Job,
    inputs: mpsc::Sender<Input>,
    metrics: Metrics,
) {
    let result = fetch(&net, &blobs, &job, &inputs, &metrics).await;
    if let Err(Failure::Bad(reason)) = &result {
        metrics.garbage("bad_file");
        net.report_misbehaviour(job.from, format!("file transfer: {reason}"));
    }
    let _ = inputs
        .send(Input::FileEnded {
            hash: job.hash,
            result,
        })
        .await;
}

async fn fetch(
    net: &NetworkHandle,
    blobs: &Arc<Blobs>,
    job: &Job,
    inputs: &mpsc::Sender<Input>,
    metrics: &Metrics,
) -> Result<(), Failure> {
    let part = blobs.part_path(&job.hash);
    // A partial file shorter than the progress says (removed by hand, say) starts over.
    let on_disk = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let received = if on_disk >= job.received {
        job.received
    } else {
        0
    };
    let first = received / CHUNK as u64;
    let total = chunks(job.size);
    blobs
        .room_for(job.size - received.min(job.size))
        .map_err(|e| Failure::Disk(e.to_string()))?;
    // What is here already is hashed first; the rest as it arrives, in order, so the
    // whole is never read again.
    let prefix = first.saturating_mul(CHUNK as u64).min(job.size);
    let p = part.clone();
    let mut hasher = tokio::task::spawn_blocking(move || super::blobs::hash_prefix(&p, prefix))
        .await
        .map_err(|e| Failure::Disk(e.to_string()))?
        .map_err(disk)?;
    if first < total {
        let stream = crate::delivery::connect(net, job.from, FILE_PROTOCOL)
            .await
            .map_err(|e| Failure::Retry(e.to_string()))?;
        hasher = receive(stream, part, job, first, hasher, inputs, metrics).await?;
    }
    let digest: FileHash = hasher.finalize().into();
    let (b, hash, size) = (blobs.clone(), job.hash, job.size);
    match tokio::task::spawn_blocking(move || b.complete(&hash, size, &digest)).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(Failure::Bad(
            "the file does not hash to what the message said".into(),
        )),
        Ok(Err(e)) => Err(disk(e)),
        Err(e) => Err(Failure::Disk(e.to_string())),
    }
}

/// Asks for chunks `first..` and writes them to the partial file; `hasher` has seen the
/// chunks before `first` and sees the rest.
async fn receive(
    stream: Stream,
    part: std::path::PathBuf,
    job: &Job,
    first: u64,
    hasher: Sha256,
    inputs: &mpsc::Sender<Input>,
    metrics: &Metrics,
) -> Result<Sha256, Failure> {
    let (mut r, mut w) = stream.split();
    let request = FileRequest {
        hash: job.hash,
        from: first,
    };
    let asked = async {
        wire::write_frame(&mut w, &request).await?;
        w.flush().await?;
        wire::read_frame_max::<_, FileReply>(&mut r, super::MAX_REQUEST).await
    };
    match tokio::time::timeout(STALL, asked).await {
        Err(_) => return Err(Failure::Retry(format!("no answer within {STALL:?}"))),
        Ok(Err(wire::WireError::Io(e))) => return Err(Failure::Retry(e.to_string())),
        Ok(Err(e)) => return Err(Failure::Bad(e.to_string())),
        Ok(Ok(None)) => return Err(Failure::Retry("the sender closed the stream".into())),
        Ok(Ok(Some(FileReply::Refused(reason)))) => return Err(Failure::Refused(reason)),
        Ok(Ok(Some(FileReply::Sending { size }))) if size != job.size => {
            return Err(Failure::Bad(format!(
                "it sends {size} bytes; the message said {}",
                job.size
            )));
        }
        Ok(Ok(Some(FileReply::Sending { .. }))) => {}
    }
    let (tx, rx) = mpsc::channel::<(u64, Vec<u8>)>(PIPELINE);
    let writer = {
        let (job, inputs) = (job.clone(), inputs.clone());
        tokio::task::spawn_blocking(move || {
            // Emptied when the download starts from the beginning.
            let file = super::blobs::create_private(&part, first == 0)
                .map_err(|e| Failure::Disk(e.to_string()))?;
            write_chunks(file, &job, hasher, rx, &inputs)
        })
    };
    let mut read_error = None;
    for index in first..chunks(job.size) {
        // The service stopped (the node is shutting down): the progress stays as it is.
        if inputs.is_closed() {
            read_error = Some(Failure::Retry("the messaging service stopped".into()));
            break;
        }
        let mut buf = vec![0u8; chunk_len(job.size, index) + TAG];
        match tokio::time::timeout(STALL, r.read_exact(&mut buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                read_error = Some(Failure::Retry(e.to_string()));
                break;
            }
            Err(_) => {
                read_error = Some(Failure::Retry(format!("no data within {STALL:?}")));
                break;
            }
        }
        metrics.file_bytes_received.inc_by(buf.len() as u64);
        if tx.send((index, buf)).await.is_err() {
            break;
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Failure::Disk(e.to_string()))
        .and_then(|r| r);
    let _ = w.close().await;
    // The disk thread's verdict first: a bad chunk explains a stream cut after it.
    let hasher = written?;
    match read_error {
        Some(e) => Err(e),
        None => Ok(hasher),
    }
}

/// Opens, writes and syncs chunks as they come, reporting synced progress. Ends when
/// the network side stops sending (synced up to what it got) or a chunk is bad.
fn write_chunks(
    file: std::fs::File,
    job: &Job,
    mut hasher: Sha256,
    mut rx: mpsc::Receiver<(u64, Vec<u8>)>,
    inputs: &mpsc::Sender<Input>,
) -> Result<Sha256, Failure> {
    let cipher = FileCipher::new(&job.key, job.hash, job.size);
    let mut unsynced: Option<u64> = None;
    let sync = |done_through: u64| -> Result<(), Failure> {
        file.sync_data().map_err(disk)?;
        let received = (done_through + 1)
            .saturating_mul(CHUNK as u64)
            .min(job.size);
        let _ = inputs.blocking_send(Input::FileProgress {
            hash: job.hash,
            received,
        });
        Ok(())
    };
    let mut since = 0;
    while let Some((index, mut buf)) = rx.blocking_recv() {
        if cipher.open(index, &mut buf).is_err() {
            if let Some(last) = unsynced {
                sync(last)?;
            }
            return Err(Failure::Bad(format!("chunk {index} failed its tag")));
        }
        file.write_all_at(&buf, index * CHUNK as u64)
            .map_err(disk)?;
        hasher.update(&buf);
        unsynced = Some(index);
        since += 1;
        if since >= SYNC_CHUNKS || index + 1 == chunks(job.size) {
            sync(index)?;
            unsynced = None;
            since = 0;
        }
    }
    if let Some(last) = unsynced {
        sync(last)?;
    }
    Ok(hasher)
}

/// Answers one peer's request for a file: refused unless this node offered the file to
/// that peer; else the chunks from the one asked for, sealed under that offer's key,
/// at most `rate` bytes a second if set.
pub(crate) async fn serve(
    peer: PeerId,
    stream: Stream,
    inputs: mpsc::Sender<Input>,
    peers: Peers,
    blobs: Arc<Blobs>,
    rate: Option<u64>,
) {
    let (mut r, mut w) = stream.split();
    let request = match tokio::time::timeout(
        STALL,
        wire::read_frame_max::<_, FileRequest>(&mut r, super::MAX_REQUEST),
    )
    .await
    {
        Ok(Ok(Some(req))) => req,
        Ok(Err(e)) => {
            peers.failed(peer, "file", &e);
            return;
        }
        Ok(Ok(None)) | Err(_) => return,
    };
    let (tx, rx) = oneshot::channel();
    let asked = Input::FileGrant {
        peer,
        hash: request.hash,
        reply: tx,
    };
    if inputs.send(asked).await.is_err() {
        return;
    }
    let opened = match rx.await.ok().flatten() {
        None => Err("no file with this hash was offered to you"),
        Some(g) if request.from > chunks(g.size) => Err("that chunk is past the end"),
        Some(g) => match std::fs::File::open(blobs.path(&request.hash)) {
            Ok(f) => Ok((g, f)),
            Err(_) => Err("this node no longer has that file"),
        },
    };
    let (grant, file) = match opened {
        Ok(o) => o,
        Err(reason) => {
            let _ = wire::write_frame(&mut w, &FileReply::Refused(reason.into())).await;
            let _ = w.close().await;
            return;
        }
    };
    if request.from > 0 {
        peers.metrics.files_resumed.inc();
    }
    if wire::write_frame(&mut w, &FileReply::Sending { size: grant.size })
        .await
        .is_err()
    {
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(PIPELINE);
    let (hash, size, key, from) = (request.hash, grant.size, grant.key, request.from);
    let reader = tokio::task::spawn_blocking(move || {
        let cipher = FileCipher::new(&key, hash, size);
        for index in from..chunks(size) {
            let mut buf = Vec::with_capacity(CHUNK + TAG);
            buf.resize(chunk_len(size, index), 0);
            if file.read_exact_at(&mut buf, index * CHUNK as u64).is_err() {
                return;
            }
            cipher.seal(index, &mut buf);
            if tx.blocking_send(buf).is_err() {
                return;
            }
        }
    });
    let start = tokio::time::Instant::now();
    let mut sent = 0u64;
    while let Some(buf) = rx.recv().await {
        if w.write_all(&buf).await.is_err() {
            break;
        }
        sent += buf.len() as u64;
        peers.metrics.file_bytes_served.inc_by(buf.len() as u64);
        if let Some(rate) = rate.filter(|r| *r > 0) {
            tokio::time::sleep_until(start + Duration::from_secs_f64(sent as f64 / rate as f64))
                .await;
        }
    }
    drop(rx);
    let _ = reader.await;
    let _ = w.close().await;
}
