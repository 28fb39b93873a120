//! Where one service reads another: the node implements each consumer's trait over the
//! provider's handle (see docs/architecture.md, "Services that need each other").

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use nodus_gateway::{AddSource, Content, Reader, SourceError, TorrentView};
use nodus_torrent::{AddRequest, FileReader, TorrentError, TorrentHandle, TorrentInfo};

/// The gateway's view of the torrent service.
pub struct TorrentContent(pub TorrentHandle);

fn source_error(e: TorrentError) -> SourceError {
    let msg = e.to_string();
    match e {
        TorrentError::NotFound(_) | TorrentError::NoSuchFile { .. } => SourceError::NotFound(msg),
        TorrentError::Metainfo(_)
        | TorrentError::Magnet(_)
        | TorrentError::BadSource(_)
        | TorrentError::NotAFile(_)
        | TorrentError::TorrentFileTooLarge { .. } => SourceError::BadRequest(msg),
        TorrentError::NotYet { .. } | TorrentError::NoMetadata(_) => SourceError::NotYet(msg),
        TorrentError::Paused(_) | TorrentError::Stopped => SourceError::Unavailable(msg),
        _ => SourceError::Other(msg),
    }
}

fn view(t: TorrentInfo) -> TorrentView {
    TorrentView {
        has_metadata: t.pieces_total > 0,
        id: t.id,
        name: t.name,
        files: t.files,
        size: t.size,
        done: t.done,
    }
}

impl Content for TorrentContent {
    fn torrent(&self, id: &str) -> Result<TorrentView, SourceError> {
        self.0.get(id).map(view).map_err(source_error)
    }

    fn list(&self) -> Vec<TorrentView> {
        self.0.list().into_iter().map(view).collect()
    }

    fn add(&self, source: AddSource) -> BoxFuture<'_, Result<(String, bool), SourceError>> {
        async move {
            let req = match source {
                AddSource::Link(link) => AddRequest {
                    source: link,
                    ..Default::default()
                },
                AddSource::Torrent(bytes) => AddRequest {
                    torrent_base64: Some(data_encoding::BASE64.encode(&bytes)),
                    ..Default::default()
                },
            };
            match self.0.add(req).await {
                Ok(info) => Ok((info.id, true)),
                Err(TorrentError::Duplicate(id)) => Ok((id, false)),
                Err(e) => Err(source_error(e)),
            }
        }
        .boxed()
    }

    fn wait_metadata(
        &self,
        id: &str,
        wait: Duration,
    ) -> BoxFuture<'_, Result<TorrentView, SourceError>> {
        let id = id.to_string();
        async move {
            self.0
                .wait_metadata(&id, wait)
                .await
                .map(view)
                .map_err(source_error)
        }
        .boxed()
    }

    fn open(&self, id: &str, file: usize) -> Result<Box<dyn Reader>, SourceError> {
        let r = self.0.open_file(id, file).map_err(source_error)?;
        Ok(Box::new(TorrentReader(r)))
    }

    fn remove(&self, id: &str) -> BoxFuture<'_, Result<(), SourceError>> {
        let id = id.to_string();
        async move { self.0.remove(&id, true).await.map_err(source_error) }.boxed()
    }
}

struct TorrentReader(FileReader);

impl Reader for TorrentReader {
    fn read(
        &mut self,
        pos: u64,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Bytes, SourceError>> {
        async move { self.0.read(pos, max, wait).await.map_err(source_error) }.boxed()
    }
}

/// Offers what the service whose handle is `handle` provides to the services after it.
pub fn provide(handle: &(dyn std::any::Any + Send + Sync), provided: &mut nodus_service::Provided) {
    if let Some(t) = handle.downcast_ref::<TorrentHandle>() {
        provided.insert::<nodus_gateway::SharedContent>(Arc::new(TorrentContent(t.clone())));
    }
}
