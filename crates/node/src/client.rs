//! A client of a node's HTTP API, found through its data dir (endpoints.json and
//! api.cookie). Used by the CLI, the harness and the tests.

use std::path::PathBuf;

use futures::{Stream, StreamExt};
use nodus_core::{DataDir, Endpoints, token};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no node running for data dir {0}: start it with `nodus up --data-dir {0}`")]
    NoNode(PathBuf),
    #[error("the node refused the event stream")]
    StreamRefused,
    #[error("{message}")]
    Status { status: u16, message: String },
    #[error("talking to the node failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the node's reply is unreadable: {0}")]
    Reply(#[source] reqwest::Error),
    #[error("the node's event stream is malformed: {0}")]
    Sse(#[source] eventsource_stream::EventStreamError<reqwest::Error>),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
    dir: Option<PathBuf>,
}

/// One Server-Sent Event: its `event:` name and `data:` text.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

impl ApiClient {
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        ApiClient {
            base: base.into(),
            token: token.into(),
            http: reqwest::Client::new(),
            dir: None,
        }
    }

    pub fn from_data_dir(dir: &DataDir) -> Result<Self, ClientError> {
        let no_node = || ClientError::NoNode(dir.root().to_path_buf());
        let endpoints = Endpoints::read(&dir.endpoints_path()).map_err(|_| no_node())?;
        let token = token::read(&dir.cookie_path()).map_err(|_| no_node())?;
        let mut c = ApiClient::new(endpoints.api, token);
        c.dir = Some(dir.root().to_path_buf());
        Ok(c)
    }

    /// The link that opens this node's dashboard logged in (the token is in its fragment).
    pub fn dashboard_url(&self) -> String {
        crate::api::ui::login_url(&self.base, &self.token)
    }

    fn map_send_err(&self, e: reqwest::Error) -> ClientError {
        match (&self.dir, e.is_connect()) {
            (Some(dir), true) => ClientError::NoNode(dir.clone()),
            _ => ClientError::Http(e),
        }
    }

    async fn finish(&self, resp: reqwest::Response) -> Result<Value, ClientError> {
        let status = resp.status();
        let body: Value = resp.json().await.map_err(ClientError::Reply)?;
        if status.is_success() {
            Ok(body)
        } else {
            let message = body["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string();
            Err(ClientError::Status {
                status: status.as_u16(),
                message,
            })
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        req.send().await.map_err(|e| self.map_send_err(e))
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let resp = self.send(self.request(reqwest::Method::GET, path)).await?;
        self.finish(resp).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let req = self.request(reqwest::Method::POST, path).json(body);
        let resp = self.send(req).await?;
        self.finish(resp).await
    }

    /// POSTs raw bytes (a file, as it is) with `content_type`.
    pub async fn post_bytes(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Value, ClientError> {
        let req = self
            .request(reqwest::Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        let resp = self.send(req).await?;
        self.finish(resp).await
    }

    /// GETs a body as bytes (an export, a file).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let resp = self.send(self.request(reqwest::Method::GET, path)).await?;
        if !resp.status().is_success() {
            return self.finish(resp).await.map(|_| Vec::new());
        }
        Ok(resp.bytes().await.map_err(ClientError::Reply)?.to_vec())
    }

    /// POSTs a file's bytes, streamed from disk (never read whole into memory).
    pub async fn post_file(
        &self,
        path: &str,
        file: &std::path::Path,
    ) -> Result<Value, ClientError> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|source| ClientError::File {
                path: file.to_path_buf(),
                source,
            })?;
        let len = f.metadata().await.map(|m| m.len()).ok();
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20));
        let mut req = self
            .request(reqwest::Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(len) = len {
            req = req.header(reqwest::header::CONTENT_LENGTH, len);
        }
        let resp = self.send(req).await?;
        self.finish(resp).await
    }

    /// GETs a body into a file, streamed (written to `dest.part`, renamed when whole).
    pub async fn get_to_file(
        &self,
        path: &str,
        dest: &std::path::Path,
    ) -> Result<u64, ClientError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let resp = self.send(self.request(reqwest::Method::GET, path)).await?;
        if !resp.status().is_success() {
            return self.finish(resp).await.map(|_| 0);
        }
        let part = dest.with_extension("part");
        let file_err = |source| ClientError::File {
            path: dest.to_path_buf(),
            source,
        };
        let mut out = tokio::fs::File::create(&part).await.map_err(file_err)?;
        let mut body = resp.bytes_stream();
        let mut n = 0u64;
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(ClientError::Reply)?;
            out.write_all(&piece).await.map_err(file_err)?;
            n += piece.len() as u64;
        }
        out.sync_all().await.map_err(file_err)?;
        tokio::fs::rename(&part, dest).await.map_err(file_err)?;
        Ok(n)
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let req = self.request(reqwest::Method::PUT, path).json(body);
        let resp = self.send(req).await?;
        self.finish(resp).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        let resp = self
            .send(self.request(reqwest::Method::DELETE, path))
            .await?;
        self.finish(resp).await
    }

    /// Opens a Server-Sent Events stream.
    pub async fn sse(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Result<SseEvent, ClientError>> + use<>, ClientError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.map_send_err(e))?;
        if !resp.status().is_success() {
            return Err(self
                .finish(resp)
                .await
                .err()
                .unwrap_or(ClientError::StreamRefused));
        }
        Ok(events(resp.bytes_stream()))
    }
}

/// The events of a Server-Sent Events byte stream, as the WHATWG spec parses them
/// (`\r\n` and `\r` line ends, characters split across chunks); events without data
/// (keep-alives) are skipped.
fn events<S, B>(bytes: S) -> impl Stream<Item = Result<SseEvent, ClientError>> + use<S, B>
where
    S: Stream<Item = Result<B, reqwest::Error>> + Unpin,
    B: AsRef<[u8]>,
{
    use eventsource_stream::{EventStreamError, Eventsource};
    bytes.eventsource().filter_map(|r| async move {
        match r {
            Ok(ev) if ev.data.is_empty() => None,
            Ok(ev) => Some(Ok(SseEvent {
                event: ev.event,
                data: ev.data,
            })),
            Err(EventStreamError::Transport(e)) => Some(Err(ClientError::Http(e))),
            Err(e) => Some(Err(ClientError::Sse(e))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let owned: Vec<Result<Vec<u8>, reqwest::Error>> =
            chunks.iter().map(|c| Ok(c.to_vec())).collect();
        events(futures::stream::iter(owned))
            .map(|r| r.unwrap())
            .collect()
            .await
    }

    #[tokio::test]
    async fn sse_events_across_chunks_and_line_ends() {
        // "é" split between two chunks, CRLF line ends, a keep-alive comment, and a
        // two-line data field.
        let got = parse(&[
            b"event: net\r\ndata: {\"name\":\"caf\xc3",
            b"\xa9\"}\r\n\r\n:keep-alive\n\n",
            b"data: one\ndata: two\n\n",
        ])
        .await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].event, "net");
        assert_eq!(got[0].data, "{\"name\":\"café\"}");
        assert_eq!(got[1].event, "message");
        assert_eq!(got[1].data, "one\ntwo");
    }
}
