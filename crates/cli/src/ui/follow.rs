//! Printing a live stream of the node's (`nodus events`, `nodus pubsub subscribe`,
//! `nodus msg inbox --follow`).

use anyhow::{Result, bail};
use futures::StreamExt;
use serde_json::Value;

/// Prints events of an SSE stream until it ends, `count` events were shown, or Ctrl-C.
pub async fn follow(
    stream: impl futures::Stream<Item = Result<nodus_node::client::SseEvent, nodus_node::ClientError>>,
    json: bool,
    count: Option<usize>,
    text: impl Fn(&Value) -> String,
) -> Result<()> {
    let mut stream = std::pin::pin!(stream);
    let mut shown = 0;
    loop {
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            n = stream.next() => n,
        };
        let Some(ev) = next else {
            bail!("the node closed the stream (did it stop?)");
        };
        let ev = ev?;
        if ev.event == "ready" {
            if json {
                println!("{}", ev.data);
            } else {
                eprintln!("following (Ctrl-C to stop)");
            }
            continue;
        }
        let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::String(ev.data.clone()));
        if json {
            println!("{}", serde_json::to_string(&v)?);
        } else {
            println!("{}", text(&v));
        }
        shown += 1;
        if count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
    }
}
