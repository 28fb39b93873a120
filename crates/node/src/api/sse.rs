//! Live streams as Server-Sent Events: overlay events, and gossip messages of a topic.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream};

use super::{ApiError, ApiState};

/// First event of every stream: tells the client the stream (and any subscription
/// behind it) is in place, so nothing sent after this is missed.
fn ready() -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::once(async { Ok(Event::default().event("ready").data(r#"{"type":"ready"}"#)) })
}

/// One SSE event per item of a broadcast channel, named `name`.
fn broadcast_events<T: serde::Serialize + Clone + Send + 'static>(
    rx: tokio::sync::broadcast::Receiver<T>,
    name: &'static str,
) -> impl Stream<Item = Result<Event, Infallible>> {
    BroadcastStream::new(rx).map(move |ev| {
        Ok(match ev {
            Ok(ev) => Event::default()
                .event(name)
                .json_data(&ev)
                .unwrap_or_else(|_| Event::default().comment("unencodable event")),
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                Event::default().event("lagged").data(n.to_string())
            }
        })
    })
}

/// Overlay events (`net`), messaging events (`msg`), chain events (`chain`) and
/// torrent events (`torrent`: added, progress each second, completed, removed),
/// interleaved as they happen.
pub async fn events(
    State(s): State<ApiState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let chain = match &s.chain {
        Some(c) => broadcast_events(c.events(), "chain").boxed(),
        None => futures::stream::pending().boxed(),
    };
    let torrent = match &s.torrent {
        Some(t) => broadcast_events(t.events(), "torrent").boxed(),
        None => futures::stream::pending().boxed(),
    };
    let live = futures::stream::select(
        futures::stream::select(
            broadcast_events(s.net.events(), "net"),
            broadcast_events(s.msg.events(), "msg"),
        ),
        futures::stream::select(chain, torrent),
    );
    Sse::new(ready().chain(live)).keep_alive(KeepAlive::default())
}

#[derive(Deserialize)]
pub struct TopicQuery {
    topic: String,
}

pub async fn subscribe(
    State(s): State<ApiState>,
    Query(q): Query<TopicQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if q.topic.is_empty() {
        return Err(ApiError::bad_request("topic must not be empty"));
    }
    let rx = s.net.subscribe(&q.topic).await?;
    let stream = ready().chain(ReceiverStream::new(rx).map(|m| {
        let body = serde_json::json!({
            "topic": m.topic,
            "source": m.source,
            "via": m.via,
            "id": m.id,
            "data": String::from_utf8_lossy(&m.data),
        });
        Ok(Event::default().event("message").data(body.to_string()))
    }));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
