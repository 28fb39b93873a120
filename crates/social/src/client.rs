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
}

impl Client {
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        Ok(Client {
            ws,
            patience: Duration::from_secs(30),
        })
    }

    pub async fn send_raw(&mut self, text: String) -> Result<(), ClientError> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next message from the relay, as a JSON array.
    pub async fn next(&mut self) -> Result<Vec<Value>, ClientError> {
        loop {
            let m = tokio::time::timeout(self.patience, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout(self.patience))?;
            match m {
                Some(Ok(Message::Text(t))) => {
                    return match serde_json::from_str::<Value>(t.as_str()) {
                        Ok(Value::Array(a)) => Ok(a),
                        _ => Err(ClientError::Garbage(t.as_str().chars().take(200).collect())),
                    };
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
        let id = hex::encode(e.id);
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

    /// Publishes events with up to `window` of them awaiting their OK at once, as a
    /// client with much to send does; how many the relay accepted.
    pub async fn publish_many(
        &mut self,
        events: &[Event],
        window: usize,
    ) -> Result<usize, ClientError> {
        let (mut sent, mut answered, mut accepted) = (0, 0, 0);
        while answered < events.len() {
            while sent < events.len() && sent - answered < window.max(1) {
                self.send_raw(format!("[\"EVENT\",{}]", events[sent].to_json()))
                    .await?;
                sent += 1;
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

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

fn event_of(m: &[Value]) -> Result<Event, ClientError> {
    m.get(2)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or_else(|| ClientError::Garbage("an EVENT without a valid event".into()))
}
