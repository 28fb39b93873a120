//! The cloneable way into the messaging service, used by the HTTP API.

use libp2p::PeerId;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::MsgError;
use crate::service::Input;
use crate::service::NewFile;
use crate::types::{ContactInfo, FileInfo, GroupInfo, Message, MsgEvent, MsgStats};

type Reply<T> = oneshot::Sender<Result<T, MsgError>>;

pub(crate) enum Command {
    Invite(Reply<String>),
    AddContact {
        code: String,
        name: Option<String>,
        reply: Reply<ContactInfo>,
    },
    Contacts(Reply<Vec<ContactInfo>>),
    Send {
        to: String,
        text: String,
        reply: Reply<Message>,
    },
    SendFiles {
        to: String,
        text: String,
        files: Vec<NewFile>,
        reply: Reply<Message>,
    },
    File {
        hash: String,
        reply: Reply<Option<FileInfo>>,
    },
    Inbox {
        all: bool,
        reply: Reply<Vec<Message>>,
    },
    History {
        with: String,
        reply: Reply<Vec<Message>>,
    },
    GroupCreate {
        name: String,
        reply: Reply<GroupInfo>,
    },
    GroupAdd {
        group: String,
        contact: String,
        reply: Reply<GroupInfo>,
    },
    GroupRemove {
        group: String,
        contact: String,
        reply: Reply<GroupInfo>,
    },
    GroupSend {
        group: String,
        text: String,
        reply: Reply<Message>,
    },
    Groups(Reply<Vec<GroupInfo>>),
    Stats(Reply<MsgStats>),
    /// Fetch from the mailboxes now (tests and `nodus msg inbox` on start).
    Poll(Reply<()>),
    Signal {
        to: String,
        app: String,
        body: Vec<u8>,
        reply: Reply<()>,
    },
}

#[derive(Clone)]
pub struct MsgHandle {
    pub(crate) tx: mpsc::Sender<Input>,
    pub(crate) events: broadcast::Sender<MsgEvent>,
    pub(crate) signals: broadcast::Sender<crate::Signal>,
    pub(crate) peer: PeerId,
    pub(crate) blobs: std::sync::Arc<crate::files::Blobs>,
    pub(crate) max_file_bytes: u64,
}

impl MsgHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, MsgError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Api(make(reply)))
            .await
            .map_err(|_| MsgError::Stopped)?;
        rx.await.map_err(|_| MsgError::Stopped)?
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.peer
    }

    pub fn events(&self) -> broadcast::Receiver<MsgEvent> {
        self.events.subscribe()
    }

    /// A contact code for this node, with a fresh one-time key.
    pub async fn invite(&self) -> Result<String, MsgError> {
        self.call(Command::Invite).await
    }

    pub async fn add_contact(
        &self,
        code: &str,
        name: Option<&str>,
    ) -> Result<ContactInfo, MsgError> {
        self.call(|reply| Command::AddContact {
            code: code.to_string(),
            name: name.map(str::to_string),
            reply,
        })
        .await
    }

    pub async fn contacts(&self) -> Result<Vec<ContactInfo>, MsgError> {
        self.call(Command::Contacts).await
    }

    /// Queues a message to a contact (by name or peer id). It is on disk when this returns.
    pub async fn send(&self, to: &str, text: &str) -> Result<Message, MsgError> {
        self.call(|reply| Command::Send {
            to: to.to_string(),
            text: text.to_string(),
            reply,
        })
        .await
    }

    /// Sends `body` to the contact `to` (name or peer id) for its service `app`,
    /// end-to-end encrypted over their Olm session and delivered as texts are (direct,
    /// relay, mailbox; kept until acknowledged). Not stored as a message.
    pub async fn send_signal(&self, to: &str, app: &str, body: Vec<u8>) -> Result<(), MsgError> {
        self.call(|reply| Command::Signal {
            to: to.to_string(),
            app: app.to_string(),
            body,
            reply,
        })
        .await
    }

    /// Takes a file into this node's file store (to send it with [`Self::send_files`]):
    /// its bytes, hashed as they are written and synced. Returns (hash hex, size).
    pub async fn import_file<S, B, E>(&self, body: S) -> Result<(String, u64), MsgError>
    where
        S: futures::Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        let (hash, size) = self.blobs.import(body, self.max_file_bytes).await?;
        Ok((hex::encode(hash), size))
    }

    /// Sends a message with files from the file store to a contact; each file is
    /// fetched by the contact's node from this one. On disk when this returns.
    pub async fn send_files(
        &self,
        to: &str,
        text: &str,
        files: Vec<NewFile>,
    ) -> Result<Message, MsgError> {
        self.call(|reply| Command::SendFiles {
            to: to.to_string(),
            text: text.to_string(),
            files,
            reply,
        })
        .await
    }

    /// What this node knows of a file by its hash (hex): a download's progress, or one
    /// in its store. `None` if neither.
    pub async fn file(&self, hash: &str) -> Result<Option<FileInfo>, MsgError> {
        self.call(|reply| Command::File {
            hash: hash.to_string(),
            reply,
        })
        .await
    }

    /// Where the complete file with this hash (hex) is, if this node has it.
    pub fn file_path(&self, hash: &str) -> Option<std::path::PathBuf> {
        let mut h = [0u8; 32];
        hex::decode_to_slice(hash, &mut h).ok()?;
        self.blobs.size(&h)?;
        Some(self.blobs.path(&h))
    }

    /// Signals from contacts, as they arrive (a receiver that lags skips some).
    pub fn signals(&self) -> broadcast::Receiver<crate::Signal> {
        self.signals.subscribe()
    }

    /// Incoming messages not shown before (all recent ones with `all`); marks them read.
    pub async fn inbox(&self, all: bool) -> Result<Vec<Message>, MsgError> {
        self.call(|reply| Command::Inbox { all, reply }).await
    }

    /// A conversation with a contact or a group, oldest first; marks it read.
    pub async fn history(&self, with: &str) -> Result<Vec<Message>, MsgError> {
        self.call(|reply| Command::History {
            with: with.to_string(),
            reply,
        })
        .await
    }

    pub async fn group_create(&self, name: &str) -> Result<GroupInfo, MsgError> {
        self.call(|reply| Command::GroupCreate {
            name: name.to_string(),
            reply,
        })
        .await
    }

    pub async fn group_add(&self, group: &str, contact: &str) -> Result<GroupInfo, MsgError> {
        self.call(|reply| Command::GroupAdd {
            group: group.to_string(),
            contact: contact.to_string(),
            reply,
        })
        .await
    }

    pub async fn group_remove(&self, group: &str, contact: &str) -> Result<GroupInfo, MsgError> {
        self.call(|reply| Command::GroupRemove {
            group: group.to_string(),
            contact: contact.to_string(),
            reply,
        })
        .await
    }

    pub async fn group_send(&self, group: &str, text: &str) -> Result<Message, MsgError> {
        self.call(|reply| Command::GroupSend {
            group: group.to_string(),
            text: text.to_string(),
            reply,
        })
        .await
    }

    pub async fn groups(&self) -> Result<Vec<GroupInfo>, MsgError> {
        self.call(Command::Groups).await
    }

    pub async fn stats(&self) -> Result<MsgStats, MsgError> {
        self.call(Command::Stats).await
    }

    pub async fn poll_mailboxes(&self) -> Result<(), MsgError> {
        self.call(Command::Poll).await
    }
}
