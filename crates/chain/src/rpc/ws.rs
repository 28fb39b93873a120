//! JSON-RPC over WebSocket on the JSON-RPC port: every method, plus `eth_subscribe`
//! (`newHeads`, `logs` with a filter, `newPendingTransactions`) and `eth_unsubscribe`,
//! as geth offers them. Notifications are `eth_subscription` messages.
//!
//! Invariants:
//! - A connection follows the chain from the head it saw last: each new head or
//!   reorganisation wakes it, and it reads what moved (see [`super::follow`]), so a
//!   connection that fell behind the event channel still gets every block, and after a
//!   reorganisation `logs` subscriptions get the dropped blocks' logs with `removed:
//!   true` before the new branch's. Pending transactions are best effort (as in geth).
//! - Bounded: [`MAX_SUBSCRIPTIONS`] per connection, [`MAX_MESSAGE`] bytes per message,
//!   [`IN_FLIGHT`] requests answered at once (more wait in the socket), at most
//!   [`CATCH_UP`] blocks per read of the chain. A client that reads nothing for
//!   [`STALL`] while the node writes to it is closed.
//! - The connection ends when the node stops.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::B256;
use axum::extract::ws::{Message, WebSocket};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use super::follow::{LogFilter, follow, moved_logs};
use super::{RpcError, error_reply, format, one};
use crate::handle::{ChainEvent, ChainHandle};

/// Subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 1024;
/// The largest message a client may send (a batch of [`super::MAX_BATCH`] included).
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;
/// Requests of one connection being answered at once.
pub const IN_FLIGHT: usize = 64;
/// Blocks one read of the chain catches up on; a connection further behind reads again.
pub const CATCH_UP: u64 = 256;
/// How long a write to the client may wait before the connection is closed.
pub const STALL: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
enum Sub {
    Heads,
    Logs(LogFilter),
    Pending { full: bool },
}

struct Conn {
    h: ChainHandle,
    subs: HashMap<String, Sub>,
    /// The last block the connection's block subscriptions have seen.
    seen: (u64, B256),
    events: Option<broadcast::Receiver<ChainEvent>>,
}

/// Why a connection ends.
struct Closed;

/// Serves one upgraded connection until the client leaves or the node stops.
pub async fn serve(mut socket: WebSocket, h: ChainHandle, mut shutdown: watch::Receiver<bool>) {
    let mut c = Conn {
        h,
        subs: HashMap::new(),
        seen: (0, B256::ZERO),
        events: None,
    };
    let mut answering = FuturesUnordered::new();
    loop {
        tokio::select! {
            _ = crate::service::stopped(&mut shutdown) => break,
            msg = socket.recv(), if answering.len() < IN_FLIGHT => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                match c.on_request(&text).await {
                    Reply::Now(v) => {
                        if send(&mut socket, &v).await.is_err() {
                            break;
                        }
                    }
                    Reply::Later(f) => answering.push(f),
                }
            }
            Some(v) = answering.next(), if !answering.is_empty() => {
                if send(&mut socket, &v).await.is_err() {
                    break;
                }
            }
            e = recv(&mut c.events) => {
                if c.on_event(e, &mut socket).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// The next chain event, or never when there are no subscriptions.
async fn recv(
    events: &mut Option<broadcast::Receiver<ChainEvent>>,
) -> Result<ChainEvent, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn send(socket: &mut WebSocket, v: &Value) -> Result<(), Closed> {
    let text = serde_json::to_string(v).unwrap_or_default();
    match tokio::time::timeout(STALL, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Closed),
    }
}

type Answer = std::pin::Pin<Box<dyn Future<Output = Value> + Send>>;

enum Reply {
    Now(Value),
    Later(Answer),
}

fn notification(id: &str, result: Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "method": "eth_subscription",
        "params": { "subscription": id, "result": result },
    })
}

impl Conn {
    async fn on_request(&mut self, text: &str) -> Reply {
        let parsed: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return Reply::Now(error_reply(
                    Value::Null,
                    RpcError::new(-32700, format!("parse error: {e}")),
                ));
            }
        };
        let items = match parsed {
            Value::Array(items) => items,
            item => {
                return match self.local(&item).await {
                    Some(v) => Reply::Now(v),
                    None => {
                        let h = self.h.clone();
                        Reply::Later(Box::pin(
                            async move { one(&h, item, &h.request_budget()).await },
                        ))
                    }
                };
            }
        };
        if items.is_empty() || items.len() > super::MAX_BATCH {
            let why = if items.is_empty() {
                "empty batch".to_string()
            } else {
                format!("batch of more than {} requests", super::MAX_BATCH)
            };
            return Reply::Now(error_reply(Value::Null, RpcError::new(-32600, why)));
        }
        let mut done: Vec<Result<Value, Value>> = Vec::with_capacity(items.len());
        for item in items {
            done.push(match self.local(&item).await {
                Some(v) => Ok(v),
                None => Err(item),
            });
        }
        let h = self.h.clone();
        Reply::Later(Box::pin(async move {
            let budget = h.request_budget();
            let mut out = Vec::with_capacity(done.len());
            for d in done {
                out.push(match d {
                    Ok(v) => v,
                    Err(item) => one(&h, item, &budget).await,
                });
            }
            Value::Array(out)
        }))
    }

    /// Answers `eth_subscribe` and `eth_unsubscribe`, which belong to this connection;
    /// `None` for every other method.
    async fn local(&mut self, req: &Value) -> Option<Value> {
        let method = req.get("method").and_then(Value::as_str)?;
        if method != "eth_subscribe" && method != "eth_unsubscribe" {
            return None;
        }
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let params = match req.get("params") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return Some(error_reply(id, RpcError::params("params must be an array"))),
        };
        let r = if method == "eth_subscribe" {
            self.subscribe(&params).await
        } else {
            let sub = params.first().and_then(Value::as_str).unwrap_or("");
            Ok(json!(self.subs.remove(sub).is_some()))
        };
        if self.subs.is_empty() {
            self.events = None;
        }
        Some(match r {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err(e) => error_reply(id, e),
        })
    }

    async fn subscribe(&mut self, p: &[Value]) -> Result<Value, RpcError> {
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(RpcError::server(format!(
                "at most {MAX_SUBSCRIPTIONS} subscriptions per connection; eth_unsubscribe some"
            )));
        }
        let sub = match p.first().and_then(Value::as_str) {
            Some("newHeads") => Sub::Heads,
            Some("logs") => match p.get(1) {
                None | Some(Value::Null) => Sub::Logs(LogFilter::default()),
                Some(Value::Object(f)) => {
                    if f.contains_key("fromBlock")
                        || f.contains_key("toBlock")
                        || f.contains_key("blockHash")
                    {
                        return Err(RpcError::params(
                            "a logs subscription follows new blocks and takes only address \
                             and topics; for past logs use eth_getLogs",
                        ));
                    }
                    Sub::Logs(LogFilter::parse(f)?)
                }
                Some(_) => return Err(RpcError::params("expected a filter object")),
            },
            Some("newPendingTransactions") => Sub::Pending {
                full: p.get(1).and_then(Value::as_bool).unwrap_or(false),
            },
            Some(other) => {
                return Err(RpcError::params(format!(
                    "no subscription {other:?}; nodus offers newHeads, logs and \
                     newPendingTransactions"
                )));
            }
            None => return Err(RpcError::params("expected a subscription name")),
        };
        let follows_blocks = !matches!(sub, Sub::Pending { .. });
        let following = self
            .subs
            .values()
            .any(|s| !matches!(s, Sub::Pending { .. }));
        if self.events.is_none() {
            self.events = Some(self.h.events());
        }
        if follows_blocks && !following {
            self.seen = self
                .h
                .read(|c| {
                    let n = c.chain.head_number();
                    (n, c.chain.canonical_hash(n).unwrap_or_default())
                })
                .await?;
        }
        let id = loop {
            let id = format!("{:#034x}", rand::random::<u128>());
            if !self.subs.contains_key(&id) {
                break id;
            }
        };
        self.subs.insert(id.clone(), sub);
        Ok(json!(id))
    }

    async fn on_event(
        &mut self,
        e: Result<ChainEvent, broadcast::error::RecvError>,
        socket: &mut WebSocket,
    ) -> Result<(), Closed> {
        use broadcast::error::RecvError;
        match e {
            Ok(ChainEvent::PendingTx { hash }) => self.on_pending(&hash, socket).await,
            Ok(ChainEvent::NewHead { .. } | ChainEvent::Reorg { .. })
            | Err(RecvError::Lagged(_)) => self.catch_up(socket).await,
            Ok(ChainEvent::Synced { .. }) => Ok(()),
            Err(RecvError::Closed) => Err(Closed),
        }
    }

    async fn on_pending(&mut self, hash: &str, socket: &mut WebSocket) -> Result<(), Closed> {
        let wanted: Vec<(String, bool)> = self
            .subs
            .iter()
            .filter_map(|(id, s)| match s {
                Sub::Pending { full } => Some((id.clone(), *full)),
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let tx = if wanted.iter().any(|(_, full)| *full) {
            let Ok(h) = hash.parse::<B256>() else {
                return Ok(());
            };
            self.h
                .read(move |c| c.pool.get(&h).map(|t| format::transaction(t, None)))
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        for (id, full) in wanted {
            let result = match (&tx, full) {
                (Some(t), true) => t.clone(),
                (None, true) => continue,
                _ => json!(hash),
            };
            send(socket, &notification(&id, result)).await?;
        }
        Ok(())
    }

    /// Sends what the block subscriptions have not seen, up to the head.
    async fn catch_up(&mut self, socket: &mut WebSocket) -> Result<(), Closed> {
        let watching: Arc<Vec<(String, Sub)>> = Arc::new(
            self.subs
                .iter()
                .filter(|(_, s)| !matches!(s, Sub::Pending { .. }))
                .map(|(id, s)| (id.clone(), s.clone()))
                .collect(),
        );
        if watching.is_empty() {
            return Ok(());
        }
        loop {
            let (number, hash) = self.seen;
            let subs = watching.clone();
            let step = self
                .h
                .read(move |c| -> Result<_, RpcError> {
                    let c = c.chain;
                    let m = follow(c, number, hash, CATCH_UP, None);
                    let mut out = Vec::new();
                    for (id, sub) in subs.iter() {
                        match sub {
                            Sub::Heads => {
                                for b in &m.added {
                                    out.push(notification(id, head_json(c, *b)?));
                                }
                            }
                            Sub::Logs(f) => out.extend(
                                moved_logs(c, &m, f)?
                                    .into_iter()
                                    .map(|l| notification(id, l)),
                            ),
                            Sub::Pending { .. } => {}
                        }
                    }
                    Ok((out, m.number, m.hash, c.head_number()))
                })
                .await;
            let (out, number, hash, head) = match step {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(target: "nodus::chain", "subscription read failed: {}", e.message);
                    return Ok(());
                }
                Err(_) => return Err(Closed),
            };
            self.seen = (number, hash);
            for v in &out {
                send(socket, v).await?;
            }
            if number >= head {
                return Ok(());
            }
        }
    }
}

/// A block's header as `newHeads` sends it: the block without its transactions.
fn head_json(c: &crate::chain::Chain, hash: B256) -> Result<Value, RpcError> {
    let b = c
        .block(&hash)?
        .ok_or_else(|| RpcError::server("block body missing"))?;
    let work = c.meta(&hash).map(|m| m.total_work).unwrap_or_default();
    let mut v = format::block(&b, hash, work, false, &[]);
    if let Value::Object(o) = &mut v {
        o.remove("transactions");
        o.remove("uncles");
        o.remove("size");
        o.remove("totalDifficulty");
    }
    Ok(v)
}
