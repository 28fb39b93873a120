//! The HTTP server's limits, over real sockets: half-sent heads and idle connections end,
//! silent connections make room for new ones at the cap, a stalled body fails, and
//! shutdown drains.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use nodus_service::server::{Limits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Long enough that any of these tests hangs without its limit, and fails here.
const GUARD: Duration = Duration::from_secs(30);

struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(limits: Limits) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/echo", post(|body: String| async move { body }));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve("test", listener, app, limits, rx));
    Server { addr, stop, task }
}

fn limits(max_connections: usize, header: u64, body: u64) -> Limits {
    Limits {
        max_connections,
        header_timeout: Duration::from_millis(header),
        body_idle_timeout: Duration::from_millis(body),
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

/// Reads one response to `GET /` on a kept-alive connection.
async fn answer(c: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"hello") {
        let n = tokio::time::timeout(GUARD, c.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

async fn request(c: &mut TcpStream) -> String {
    c.write_all(GET).await.unwrap();
    answer(c).await
}

/// Everything the server sends until it closes; fails if it never does.
async fn until_closed(c: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(GUARD, c.read_to_end(&mut got))
        .await
        .expect("the server kept the connection open");
    // A reset is a close too.
    let _ = r;
    got
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed() {
    let s = start(limits(8, 200, 10_000)).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let got = until_closed(&mut c).await;
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let s = start(limits(8, 200, 10_000)).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    assert!(request(&mut c).await.starts_with("HTTP/1.1 200"));
    assert!(until_closed(&mut c).await.is_empty());
}

#[tokio::test]
async fn at_the_cap_a_new_connection_takes_the_slot_of_the_oldest_silent_one() {
    let s = start(limits(3, 60_000, 60_000)).await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(s.addr).await.unwrap());
    }
    let mut newcomer = TcpStream::connect(s.addr).await.unwrap();
    assert!(request(&mut newcomer).await.starts_with("HTTP/1.1 200"));
    assert!(until_closed(&mut silent[0]).await.is_empty());
    // The others keep their slots and are served when they speak.
    for c in &mut silent[1..] {
        assert!(request(c).await.starts_with("HTTP/1.1 200"));
    }
}

#[tokio::test]
async fn at_the_cap_with_every_connection_busy_the_newcomer_is_closed() {
    let s = start(limits(2, 60_000, 60_000)).await;
    let mut a = TcpStream::connect(s.addr).await.unwrap();
    let mut b = TcpStream::connect(s.addr).await.unwrap();
    request(&mut a).await;
    request(&mut b).await;
    let mut late = TcpStream::connect(s.addr).await.unwrap();
    let _ = late.write_all(GET).await;
    assert!(until_closed(&mut late).await.is_empty());
    assert!(request(&mut a).await.starts_with("HTTP/1.1 200"));
    assert!(request(&mut b).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_body_that_stalls_fails() {
    let s = start(limits(8, 60_000, 200)).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(GUARD, c.read_exact(&mut head))
        .await
        .expect("the stalled body was waited for")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 400");
}

#[tokio::test]
async fn shutdown_ends_idle_connections_and_returns() {
    let s = start(limits(8, 60_000, 60_000)).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    request(&mut c).await;
    s.stop.send(true).unwrap();
    assert!(until_closed(&mut c).await.is_empty());
    tokio::time::timeout(GUARD, s.task)
        .await
        .expect("serve did not return")
        .unwrap();
    assert!(TcpStream::connect(s.addr).await.is_err());
}
