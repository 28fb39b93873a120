//! Files with messages, the service's side: offering files (grants), taking offers in
//! (downloads, with their progress kept in msg.redb), and running the downloads.

use crate::files::transfer::{self, Failure, Job};
use crate::store::{Download, FileRef, Grant};
use crate::types::{FileInfo, FileState};
use crate::wire::{FileHash, FileOffer, MAX_FILE_NAME, MAX_FILES, MAX_MIME};

use super::*;

/// Downloads running at once.
const MAX_DOWNLOADS: usize = 4;

/// A file to send, as the API names it: a hash in the file store, and what to call it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct NewFile {
    pub hash: String,
    pub name: String,
    #[serde(default)]
    pub mime: Option<String>,
}

/// A download the service is running or will run.
pub(super) struct DownloadRun {
    pub job: Job,
    /// Where the attempt running now started.
    pub started_from: u64,
    pub running: bool,
    pub attempts: u32,
    pub retry_at: Option<Instant>,
}

fn parse_hash(s: &str) -> Option<FileHash> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h).ok()?;
    Some(h)
}

/// The message id and conversation a message key names.
fn key_parts(key: &str) -> (String, String) {
    let conversation = key.split('|').next().unwrap_or_default().to_string();
    let id = key.rsplit('|').next().unwrap_or_default().to_string();
    (id, conversation)
}

fn info(r: &FileRef, state: FileState, received: u64, error: Option<String>) -> FileInfo {
    FileInfo {
        hash: hex::encode(r.hash),
        name: r.name.clone(),
        mime: r.mime.clone(),
        size: r.size,
        received,
        state,
        error,
    }
}

impl Actor {
    pub(super) fn load_downloads(&mut self) -> Result<(), MsgError> {
        for (key, d) in self.store.scan::<Download>(store::DOWNLOADS, "")? {
            let (Some(hash), Ok(from)) = (parse_hash(&key), d.from.parse::<PeerId>()) else {
                continue;
            };
            if d.state == FileState::Downloading {
                self.downloads.insert(
                    hash,
                    DownloadRun {
                        job: Job {
                            hash,
                            from,
                            key: d.key,
                            size: d.size,
                            received: d.received,
                        },
                        started_from: 0,
                        running: false,
                        attempts: 0,
                        retry_at: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// Sends a message with files from the file store to a contact. Each file is
    /// granted to that contact under a key of its own (the same key again if that
    /// contact was offered the same bytes before and may still be fetching them).
    pub(super) fn send_files(
        &mut self,
        txn: &mut Txn,
        to: &str,
        text: String,
        files: Vec<NewFile>,
    ) -> Result<Message, MsgError> {
        if files.is_empty() || files.len() > MAX_FILES {
            return Err(MsgError::BadFile(format!(
                "a message carries 1 to {MAX_FILES} files"
            )));
        }
        if text.len() > MAX_TEXT {
            return Err(MsgError::TextTooLong(text.len()));
        }
        let peer = self.resolve_contact(to)?;
        let mut offers = Vec::with_capacity(files.len());
        for f in files {
            let hash = parse_hash(&f.hash).ok_or_else(|| {
                MsgError::BadFile(format!("{:?} is not a file hash (64 hex digits)", f.hash))
            })?;
            let name = f.name.trim().to_string();
            if name.is_empty() || name.len() > MAX_FILE_NAME {
                return Err(MsgError::BadFile(format!(
                    "a file name is 1 to {MAX_FILE_NAME} bytes"
                )));
            }
            let mime = f
                .mime
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "application/octet-stream".into());
            if mime.len() > MAX_MIME {
                return Err(MsgError::BadFile(format!(
                    "a media type is at most {MAX_MIME} bytes"
                )));
            }
            let size = self
                .blobs
                .size(&hash)
                .ok_or_else(|| MsgError::NoFile(f.hash.clone()))?;
            let gk = store::grant_key(&hash, &peer);
            let key = match txn.get::<Grant>(store::GRANTS, &gk)? {
                Some(g) => g.key,
                None => {
                    let g = Grant {
                        key: rand::random(),
                        size,
                        created_ms: now_ms(),
                    };
                    txn.put(store::GRANTS, &gk, &g)?;
                    g.key
                }
            };
            offers.push(FileOffer {
                hash,
                size,
                name,
                mime,
                key,
            });
        }
        let seq = self.next_seq(&peer)?;
        let plain = Plain {
            id: wire::new_id(),
            seq,
            sent_ms: now_ms(),
            content: Content::Files {
                text: text.clone(),
                files: offers.clone(),
            },
        };
        let shown = offers
            .iter()
            .map(|o| info(&file_ref(o), FileState::Offered, o.size, None))
            .collect();
        let msg = self.outgoing_message(&peer, (&plain.id, seq, plain.sent_ms), text, shown);
        self.store_message(txn, &msg, &plain.id)?;
        // Texts written before it in this batch leave first.
        self.flush_bundles(txn)?;
        self.queue_olm(txn, &peer, plain, true)?;
        self.emit(MsgEvent::Message {
            message: msg.clone(),
        });
        Ok(msg)
    }

    /// The files of an incoming message as the message shows them, each download
    /// recorded (or found done, or refused for its size) in this transaction.
    pub(super) fn take_offers(
        &mut self,
        txn: &mut Txn,
        sender: &str,
        message_key: &str,
        offers: &[FileOffer],
    ) -> Result<Vec<FileInfo>, MsgError> {
        let from: PeerId = sender
            .parse()
            .map_err(|_| MsgError::Store(StoreError::Damaged(format!("peer id {sender}"))))?;
        let limit = self.cfg.max_file_mib.saturating_mul(1 << 20);
        let quota = self.cfg.max_received_files_mib.saturating_mul(1 << 20);
        let mut received = self.received_sizes()?;
        let mut shown = Vec::with_capacity(offers.len());
        for o in offers {
            let r = file_ref(o);
            let hk = hex::encode(o.hash);
            if self.blobs.size(&o.hash) == Some(o.size) {
                shown.push(info(&r, FileState::Done, o.size, None));
                continue;
            }
            if let Some(d) = txn.get::<Download>(store::DOWNLOADS, &hk)?
                && d.state == FileState::Downloading
            {
                shown.push(info(&r, d.state, d.received, None));
                continue;
            }
            let mut d = Download {
                from: sender.to_string(),
                key: o.key,
                size: o.size,
                name: o.name.clone(),
                mime: o.mime.clone(),
                message: message_key.to_string(),
                received: 0,
                state: FileState::Downloading,
                error: None,
            };
            let used: u64 = received.values().sum();
            if o.size > limit {
                d.state = FileState::Failed;
                d.error = Some(format!(
                    "{} bytes is over this node's limit of {} MiB ([msg] max_file_mib)",
                    o.size, self.cfg.max_file_mib
                ));
            } else if used.saturating_add(o.size) > quota {
                d.state = FileState::Failed;
                d.error = Some(format!(
                    "{} bytes would take the files received from others past {} MiB \
                     ([msg] max_received_files_mib; {used} bytes kept or on their way): \
                     remove files from msg/files in the data dir or raise the setting",
                    o.size, self.cfg.max_received_files_mib
                ));
            } else {
                received.insert(o.hash, o.size);
                self.blobs.drop_part(&o.hash);
                self.downloads.insert(
                    o.hash,
                    DownloadRun {
                        job: Job {
                            hash: o.hash,
                            from,
                            key: o.key,
                            size: o.size,
                            received: 0,
                        },
                        started_from: 0,
                        running: false,
                        attempts: 0,
                        retry_at: None,
                    },
                );
            }
            shown.push(info(&r, d.state, 0, d.error.clone()));
            txn.put(store::DOWNLOADS, &hk, &d)?;
        }
        Ok(shown)
    }

    /// The files fetched from others that count against `max_received_files_mib`, by
    /// hash: those on their way and those kept (a file removed by hand no longer counts).
    fn received_sizes(&self) -> Result<HashMap<FileHash, u64>, MsgError> {
        let mut sizes: HashMap<FileHash, u64> = self
            .downloads
            .iter()
            .map(|(h, run)| (*h, run.job.size))
            .collect();
        for (key, d) in self.store.scan::<Download>(store::DOWNLOADS, "")? {
            let Some(h) = parse_hash(&key) else { continue };
            let counts = match d.state {
                FileState::Downloading => true,
                FileState::Done => self.blobs.size(&h) == Some(d.size),
                FileState::Offered | FileState::Failed => false,
            };
            if counts {
                sizes.insert(h, d.size);
            }
        }
        Ok(sizes)
    }

    /// The files of a stored message, with how far each has come.
    pub(super) fn files_of(
        &self,
        txn: &mut Txn,
        key: &str,
        outgoing: bool,
    ) -> Result<Vec<FileInfo>, MsgError> {
        let Some(refs) = txn.get::<Vec<FileRef>>(store::FILES, key)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(refs.len());
        for r in &refs {
            out.push(self.file_info(txn, r, outgoing)?);
        }
        Ok(out)
    }

    fn file_info(&self, txn: &mut Txn, r: &FileRef, outgoing: bool) -> Result<FileInfo, MsgError> {
        if outgoing {
            return Ok(info(r, FileState::Offered, r.size, None));
        }
        if self.blobs.size(&r.hash) == Some(r.size) {
            return Ok(info(r, FileState::Done, r.size, None));
        }
        Ok(
            match txn.get::<Download>(store::DOWNLOADS, &hex::encode(r.hash))? {
                Some(d) => info(r, d.state, d.received, d.error),
                None => info(r, FileState::Failed, 0, Some("no download recorded".into())),
            },
        )
    }

    /// What this node knows of a file by its hash: a download, or one in its store.
    pub(super) fn file_by_hash(
        &self,
        txn: &mut Txn,
        hash: &str,
    ) -> Result<Option<FileInfo>, MsgError> {
        let Some(h) = parse_hash(hash) else {
            return Ok(None);
        };
        if let Some(d) = txn.get::<Download>(store::DOWNLOADS, hash)? {
            let r = FileRef {
                hash: h,
                size: d.size,
                name: d.name,
                mime: d.mime,
            };
            let done = self.blobs.size(&h) == Some(d.size);
            return Ok(Some(if done {
                info(&r, FileState::Done, d.size, None)
            } else {
                info(&r, d.state, d.received, d.error)
            }));
        }
        Ok(self.blobs.size(&h).map(|size| FileInfo {
            hash: hash.to_string(),
            name: hash.to_string(),
            mime: "application/octet-stream".into(),
            size,
            received: size,
            state: FileState::Offered,
            error: None,
        }))
    }

    /// Whether `peer` was offered the file `hash`, and under which key.
    pub(super) fn file_grant(
        &self,
        txn: &mut Txn,
        peer: &PeerId,
        hash: &FileHash,
    ) -> Result<Option<Grant>, MsgError> {
        txn.get::<Grant>(store::GRANTS, &store::grant_key(hash, &peer.to_string()))
    }

    pub(super) fn on_file_progress(
        &mut self,
        txn: &mut Txn,
        hash: FileHash,
        received: u64,
    ) -> Result<(), MsgError> {
        if let Some(run) = self.downloads.get_mut(&hash) {
            run.job.received = run.job.received.max(received);
        }
        self.update_download(txn, &hash, |d| {
            d.received = d.received.max(received);
            d.error = None;
        })
    }

    pub(super) fn on_file_ended(
        &mut self,
        txn: &mut Txn,
        hash: FileHash,
        result: Result<(), Failure>,
    ) -> Result<(), MsgError> {
        let retry = match &result {
            Ok(()) => false,
            Err(Failure::Retry(_) | Failure::Disk(_)) => true,
            Err(Failure::Refused(_) | Failure::Bad(_)) => false,
        };
        if retry {
            if let Some(run) = self.downloads.get_mut(&hash) {
                run.running = false;
                if run.job.received > run.started_from {
                    // It got somewhere before the stream broke (a relay's circuit
                    // reached its byte limit, say): go on at once.
                    run.attempts = 0;
                    run.retry_at = None;
                } else {
                    run.attempts += 1;
                    run.retry_at =
                        Some(Instant::now() + config::retry_after(&self.cfg, run.attempts));
                }
            }
            if let Err(e) = &result {
                tracing::debug!(target: "nodus::msg", file = %hex::encode(hash), "download paused: {e}");
                // Shown with the file until it moves again: why it waits (the sender
                // away, the disk full).
                let why = Some(format!("waiting: {e}"));
                let known = txn
                    .get::<Download>(store::DOWNLOADS, &hex::encode(hash))?
                    .map(|d| d.error);
                if known.is_some_and(|k| k != why) {
                    self.update_download(txn, &hash, |d| d.error = why)?;
                }
            }
            return Ok(());
        }
        self.downloads.remove(&hash);
        match result {
            Ok(()) => {
                self.metrics.files_received.inc();
                self.update_download(txn, &hash, |d| {
                    d.received = d.size;
                    d.state = FileState::Done;
                    d.error = None;
                })
            }
            Err(e) => {
                self.blobs.drop_part(&hash);
                tracing::info!(target: "nodus::msg", file = %hex::encode(hash), "download failed: {e}");
                self.update_download(txn, &hash, |d| {
                    d.state = FileState::Failed;
                    d.error = Some(e.to_string());
                })
            }
        }
    }

    /// Changes a download's row and tells the event stream.
    fn update_download(
        &mut self,
        txn: &mut Txn,
        hash: &FileHash,
        change: impl FnOnce(&mut Download),
    ) -> Result<(), MsgError> {
        let hk = hex::encode(hash);
        let Some(mut d) = txn.get::<Download>(store::DOWNLOADS, &hk)? else {
            return Ok(());
        };
        change(&mut d);
        txn.put(store::DOWNLOADS, &hk, &d)?;
        let (message, conversation) = key_parts(&d.message);
        let r = FileRef {
            hash: *hash,
            size: d.size,
            name: d.name.clone(),
            mime: d.mime.clone(),
        };
        self.emit(MsgEvent::File {
            message,
            conversation,
            file: info(&r, d.state, d.received, d.error.clone()),
        });
        Ok(())
    }

    /// A peer is back: its downloads waiting for a retry go now.
    pub(super) fn downloads_peer_up(&mut self, peer: &PeerId) {
        for run in self.downloads.values_mut() {
            if run.job.from == *peer {
                run.retry_at = None;
            }
        }
    }

    /// Starts the downloads whose turn it is (after the commit that recorded them).
    pub(super) fn start_downloads(&mut self) {
        let now = Instant::now();
        let mut running = self.downloads.values().filter(|r| r.running).count();
        for run in self.downloads.values_mut() {
            if running >= MAX_DOWNLOADS {
                break;
            }
            if run.running || run.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            run.running = true;
            run.started_from = run.job.received;
            running += 1;
            tokio::spawn(transfer::download(
                self.net.clone(),
                self.blobs.clone(),
                run.job.clone(),
                self.inputs.clone(),
                self.metrics.clone(),
            ));
        }
    }
}

pub(super) fn file_ref(o: &FileOffer) -> FileRef {
    FileRef {
        hash: o.hash,
        size: o.size,
        name: o.name.clone(),
        mime: o.mime.clone(),
    }
}

/// The rows `files` keeps for a message's files (hashes that do not parse are skipped:
/// only the service makes these infos).
pub(super) fn refs_of(files: &[FileInfo]) -> Vec<FileRef> {
    files
        .iter()
        .filter_map(|f| {
            Some(FileRef {
                hash: parse_hash(&f.hash)?,
                size: f.size,
                name: f.name.clone(),
                mime: f.mime.clone(),
            })
        })
        .collect()
}
