//! Streams that reach a node faster than it accepts them wait for it: none is dropped.
//! (The published libp2p-stream kept one and dropped the rest; nodus patches it, see
//! vendor/libp2p-stream/README.nodus.md.) Real sockets on 127.0.0.1.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::StreamProtocol;
use libp2p::identity::Keypair;
use prometheus_client::registry::Registry;

mod common;
use common::{addr_of, config};

const T: Duration = Duration::from_secs(20);
const P: StreamProtocol = StreamProtocol::new("/nodus/test/backlog/1");
const STREAMS: u8 = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_opened_at_once_all_wait_until_accepted() {
    let start = |ip: &str| {
        nodus_net::spawn(
            Keypair::generate_ed25519(),
            config(ip),
            &mut Registry::default(),
        )
        .unwrap()
        .0
    };
    let (server, client) = (start("127.0.65.1"), start("127.0.65.2"));
    // Registered, and not read until every stream was opened and written.
    let mut incoming = server.incoming(P).unwrap();
    let peer = client.dial(addr_of(&server).await).await.unwrap();
    let opened = futures::future::join_all((0..STREAMS).map(|i| {
        let client = client.clone();
        async move {
            let mut s = client.open_stream(peer, P).await?;
            s.write_all(&[i]).await?;
            s.flush().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(s)
        }
    }))
    .await;
    let _open: Vec<_> = opened.into_iter().map(|s| s.unwrap()).collect();
    let mut seen = Vec::new();
    while seen.len() < STREAMS as usize {
        let next = tokio::time::timeout(T, incoming.next()).await;
        let Ok(Some((from, mut s))) = next else {
            panic!("{} of {STREAMS} streams were accepted", seen.len());
        };
        assert_eq!(from, client.local_peer_id());
        let mut b = [0u8];
        s.read_exact(&mut b).await.unwrap();
        seen.push(b[0]);
    }
    seen.sort();
    assert_eq!(seen, (0..STREAMS).collect::<Vec<_>>());
}
