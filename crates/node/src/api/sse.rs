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

/// Overlay events (`net`) and every running service's events, each named after its
/// service (`msg`, `chain`, `torrent`, ...), interleaved as they happen. A subscriber
/// that reads too slowly gets a `lagged` event with the number it missed.
pub async fn events(
    State(s): State<ApiState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut streams = vec![broadcast_events(s.net.events(), "net").boxed()];
    for (name, feed) in s.feeds.iter() {
        let name: &'static str = name;
        streams.push(
            feed.subscribe()
                .map(move |item| {
                    Ok(match item {
                        Ok(v) => Event::default().event(name).data(v.to_string()),
                        Err(nodus_service::events::Lagged(n)) => {
                            Event::default().event("lagged").data(n.to_string())
                        }
                    })
                })
                .boxed(),
        );
    }
    let live = futures::stream::select_all(streams);
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
