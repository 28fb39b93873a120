//! A minimal Nostr client over WebSocket: publish, subscribe, count. What the demo, the
//! benchmark and the tests use to speak to relays (nodus's or another's) as any client
//! would.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::event::Event;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the relay closed the connection")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the relay sent what is not a Nostr message: {0}")]
    Garbage(String),
    #[error("the relay closed subscription {sub}: {message}")]
    SubscriptionClosed { sub: String, message: String },
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// How long to wait for each answer.
    pub patience: Duration,
    url: String,
    /// The last NIP-42 challenge the relay sent.
    challenge: Option<String>,
}

impl Client {
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        Ok(Client {
            ws,
            patience: Duration::from_secs(30),
            url: url.to_string(),
            challenge: None,
        })
    }

    pub async fn send_raw(&mut self, text: String) -> Result<(), ClientError> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next message from the relay, as a JSON array. A NIP-42 challenge is not
    /// one: it is kept for [`Client::auth`].
    pub async fn next(&mut self) -> Result<Vec<Value>, ClientError> {
        loop {
            let m = self.next_frame().await?;
            if m.first().and_then(Value::as_str) != Some("AUTH") {
                return Ok(m);
            }
        }
    }

    /// The next message, challenges included.
    async fn next_frame(&mut self) -> Result<Vec<Value>, ClientError> {
        loop {
            let m = tokio::time::timeout(self.patience, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout(self.patience))?;
            match m {
                Some(Ok(Message::Text(t))) => {
                    let a = match serde_json::from_str::<Value>(t.as_str()) {
                        Ok(Value::Array(a)) => a,
                        _ => {
                            return Err(ClientError::Garbage(
                                t.as_str().chars().take(200).collect(),
                            ));
                        }
                    };
                    if a.first().and_then(Value::as_str) == Some("AUTH")
                        && let Some(c) = a.get(1).and_then(Value::as_str)
                    {
                        self.challenge = Some(c.to_string());
                    }
                    return Ok(a);
                }
                Some(Ok(Message::Close(_))) | None => return Err(ClientError::Closed),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Publishes an event; the relay's OK as (accepted, message).
    pub async fn publish(&mut self, e: &Event) -> Result<(bool, String), ClientError> {
        self.send_raw(format!("[\"EVENT\",{}]", e.to_json()))
            .await?;
        self.ok_for(&e.id).await
    }

    /// Publishes events with up to `window` of them awaiting their OK at once, as a
    /// client with much to send does; how many the relay accepted.
    pub async fn publish_many(
        &mut self,
        events: &[Event],
        window: usize,
    ) -> Result<usize, ClientError> {
        let (mut sent, mut answered, mut accepted) = (0, 0, 0);
        let window = window.max(1);
        while answered < events.len() {
            // Topped up once half the window is answered, in one write.
            if sent - answered <= window / 2 && sent < events.len() {
                while sent < events.len() && sent - answered < window {
                    let frame = format!("[\"EVENT\",{}]", events[sent].to_json());
                    self.ws.feed(Message::Text(frame.into())).await?;
                    sent += 1;
                }
                self.ws.flush().await?;
            }
            let m = self.next().await?;
            if m.first().and_then(Value::as_str) == Some("OK") {
                answered += 1;
                if m.get(2).and_then(Value::as_bool) == Some(true) {
                    accepted += 1;
                }
            }
        }
        Ok(accepted)
    }

    /// Opens a subscription; the stored events it matched (up to EOSE).
    pub async fn subscribe(
        &mut self,
        sub: &str,
        filters: &[Value],
    ) -> Result<Vec<Event>, ClientError> {
        let mut req = vec![json!("REQ"), json!(sub)];
        req.extend(filters.iter().cloned());
        self.send_raw(Value::Array(req).to_string()).await?;
        let mut stored = Vec::new();
        loop {
            let m = self.next().await?;
            match (
                m.first().and_then(Value::as_str),
                m.get(1).and_then(Value::as_str),
            ) {
                (Some("EVENT"), Some(s)) if s == sub => stored.push(event_of(&m)?),
                (Some("EOSE"), Some(s)) if s == sub => return Ok(stored),
                (Some("CLOSED"), Some(s)) if s == sub => {
                    return Err(ClientError::SubscriptionClosed {
                        sub: sub.to_string(),
                        message: m.get(2).and_then(Value::as_str).unwrap_or("").to_string(),
                    });
                }
                _ => {}
            }
        }
    }

    /// The next live event of subscription `sub`.
    pub async fn next_event(&mut self, sub: &str) -> Result<Event, ClientError> {
        loop {
            let m = self.next().await?;
            if m.first().and_then(Value::as_str) == Some("EVENT")
                && m.get(1).and_then(Value::as_str) == Some(sub)
            {
                return event_of(&m);
            }
        }
    }

    /// Authenticates as `keys` (NIP-42), answering the relay's challenge (waiting for
    /// it if none came yet); the relay's OK as (accepted, message).
    pub async fn auth(&mut self, keys: &crate::Keys) -> Result<(bool, String), ClientError> {
        while self.challenge.is_none() {
            self.next_frame().await?;
        }
        let challenge = self.challenge.clone().unwrap_or_default();
        let e = keys.sign(
            crate::relay::now(),
            crate::ws::AUTH_KIND,
            vec![
                vec!["relay".into(), self.url.clone()],
                vec!["challenge".into(), challenge],
            ],
            "",
        );
        self.send_raw(json!(["AUTH", serde_json::to_value(&e).unwrap_or_default()]).to_string())
            .await?;
        self.ok_for(&e.id).await
    }

    async fn ok_for(&mut self, id: &[u8; 32]) -> Result<(bool, String), ClientError> {
        let id = hex::encode(id);
        loop {
            let m = self.next().await?;
            if m.first().and_then(Value::as_str) == Some("OK")
                && m.get(1).and_then(Value::as_str) == Some(id.as_str())
            {
                let ok = m.get(2).and_then(Value::as_bool).unwrap_or(false);
                let msg = m.get(3).and_then(Value::as_str).unwrap_or("").to_string();
                return Ok((ok, msg));
            }
        }
    }

    /// Reconciles `items` (this client's `(created_at, id)` set) with the relay's events
    /// matching `filter` (NIP-77): the ids the client has that the relay lacks, and the
    /// ones the relay has that the client lacks.
    pub async fn negentropy(
        &mut self,
        sub: &str,
        filter: Value,
        items: &[(u64, [u8; 32])],
    ) -> Result<(Vec<[u8; 32]>, Vec<[u8; 32]>), ClientError> {
        let mut neg =
            crate::sync::negentropy_of(items).map_err(|e| ClientError::Garbage(e.to_string()))?;
        let first = neg
            .initiate()
            .map_err(|e| ClientError::Garbage(e.to_string()))?;
        self.send_raw(json!(["NEG-OPEN", sub, filter, hex::encode(first)]).to_string())
            .await?;
        let (mut have, mut need) = (Vec::new(), Vec::new());
        loop {
            let m = self.next().await?;
            match (
                m.first().and_then(Value::as_str),
                m.get(1).and_then(Value::as_str),
            ) {
                (Some("NEG-MSG"), Some(s)) if s == sub => {
                    let msg = m
                        .get(2)
                        .and_then(Value::as_str)
                        .and_then(|h| hex::decode(h).ok())
                        .ok_or_else(|| ClientError::Garbage("NEG-MSG without hex".into()))?;
                    match neg
                        .reconcile_with_ids(&msg, &mut have, &mut need)
                        .map_err(|e| ClientError::Garbage(e.to_string()))?
                    {
                        Some(next) => {
                            self.send_raw(json!(["NEG-MSG", sub, hex::encode(next)]).to_string())
                                .await?
                        }
                        None => break,
                    }
                }
                (Some("NEG-ERR"), Some(s)) if s == sub => {
                    return Err(ClientError::SubscriptionClosed {
                        sub: sub.to_string(),
                        message: m.get(2).and_then(Value::as_str).unwrap_or("").to_string(),
                    });
                }
                _ => {}
            }
        }
        self.send_raw(json!(["NEG-CLOSE", sub]).to_string()).await?;
        let ids = |v: Vec<negentropy::Id>| v.into_iter().map(|i| i.to_bytes()).collect();
        Ok((ids(have), ids(need)))
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

fn event_of(m: &[Value]) -> Result<Event, ClientError> {
    m.get(2)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or_else(|| ClientError::Garbage("an EVENT without a valid event".into()))
}
