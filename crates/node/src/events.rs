//! A node's events as one stream: the overlay's (`net`) and each running service's,
//! each named after its source, interleaved as they happen. The API's `/api/v1/events`
//! serves it; in-process watchers (the demo's narration) subscribe to it directly.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use nodus_net::NetworkHandle;
use nodus_service::EventFeed;
use nodus_service::events::FeedItem;

#[derive(Clone)]
pub struct EventSource {
    net: NetworkHandle,
    feeds: Arc<Vec<(&'static str, EventFeed)>>,
}

impl EventSource {
    pub fn new(net: NetworkHandle, feeds: Vec<(&'static str, EventFeed)>) -> Self {
        EventSource {
            net,
            feeds: Arc::new(feeds),
        }
    }

    /// A new subscription to every source. A subscriber that reads too slowly gets
    /// `Err(Lagged(n))` with the number it missed, never a stalled node.
    pub fn subscribe(&self) -> BoxStream<'static, (&'static str, FeedItem)> {
        let net = nodus_service::events::items(self.net.events())
            .map(|item| ("net", item))
            .boxed();
        let mut streams = vec![net];
        for (name, feed) in self.feeds.iter() {
            let name: &'static str = name;
            streams.push(feed.subscribe().map(move |item| (name, item)).boxed());
        }
        futures::stream::select_all(streams).boxed()
    }
}
