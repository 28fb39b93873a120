//! Live streams as Server-Sent Events: overlay events, and gossip messages of a topic.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;

use super::{ApiError, ApiState};

/// First event of every stream: tells the client the stream (and any subscription
/// behind it) is in place, so nothing sent after this is missed.
fn ready() -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::once(async { Ok(Event::default().event("ready").data(r#"{"type":"ready"}"#)) })
}

/// Overlay events (`net`) and every running service's events, each named after its
/// service (`msg`, `chain`, `torrent`, ...), interleaved as they happen. A subscriber
/// that reads too slowly gets a `lagged` event with the number it missed.
pub async fn events(
    State(s): State<ApiState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let live = s.events.subscribe().map(|(name, item)| {
        Ok(match item {
            Ok(v) => Event::default().event(name).data(v.to_string()),
            Err(nodus_service::events::Lagged(n)) => {
                Event::default().event("lagged").data(n.to_string())
            }
        })
    });
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
