//! A service's events, as the node's event stream takes them.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// One item of a feed: an event as JSON, or how many events this subscriber missed
/// (the feed never waits for a slow reader).
pub type FeedItem = Result<serde_json::Value, Lagged>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged(pub u64);

/// A broadcast receiver's events as feed items.
pub fn items<T>(rx: broadcast::Receiver<T>) -> BoxStream<'static, FeedItem>
where
    T: serde::Serialize + Clone + Send + 'static,
{
    BroadcastStream::new(rx)
        .map(|item| match item {
            Ok(ev) => Ok(serde_json::to_value(ev).unwrap_or(serde_json::Value::Null)),
            Err(BroadcastStreamRecvError::Lagged(n)) => Err(Lagged(n)),
        })
        .boxed()
}

/// A source of event streams: each [`EventFeed::subscribe`] starts a new one.
#[derive(Clone)]
pub struct EventFeed(Arc<dyn Fn() -> BoxStream<'static, FeedItem> + Send + Sync>);

impl EventFeed {
    /// A feed over a broadcast channel of serializable events.
    pub fn broadcast<T>(tx: broadcast::Sender<T>) -> Self
    where
        T: serde::Serialize + Clone + Send + 'static,
    {
        EventFeed(Arc::new(move || items(tx.subscribe())))
    }

    pub fn subscribe(&self) -> BoxStream<'static, FeedItem> {
        (self.0)()
    }
}
