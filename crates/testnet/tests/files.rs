//! Files sent with messages, between real nodes on loopback: a 10 MiB photo directly
//! and through a relay, with its progress; the same bytes again (stored once, not
//! fetched again); and a node that asks for a file it was not offered, refused.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use nodus_msg::wire::{self, FILE_PROTOCOL, FileReply, FileRequest};
use nodus_msg::{FileState, Message, MsgEvent, MsgHandle, NewFile};
use nodus_testnet::{Testnet, hidden_node_config};
use tokio::sync::broadcast;

const T: Duration = Duration::from_secs(60);
const SIZE: usize = 10 * 1024 * 1024 + 12_345;

fn msg(net: &Testnet, k: usize) -> &MsgHandle {
    net.node(k).service::<MsgHandle>().expect("msg runs")
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::fill(&mut v[..]);
    v
}

/// Takes `bytes` into `h`'s file store and sends them to `to` as `name`.
async fn send_file(h: &MsgHandle, to: &str, bytes: &[u8], name: &str) -> Message {
    let pieces: Vec<Result<&[u8], String>> = bytes.chunks(1 << 20).map(Ok).collect();
    let (hash, size) = h
        .import_file(futures::stream::iter(pieces))
        .await
        .expect("taken in");
    assert_eq!(size as usize, bytes.len());
    let file = NewFile {
        hash,
        name: name.into(),
        mime: Some("image/jpeg".into()),
    };
    h.send_files(to, "a photo", vec![file]).await.expect("sent")
}

/// Waits for the file of message `id` to be done on `rx`'s node; the progress it saw.
async fn file_done(rx: &mut broadcast::Receiver<MsgEvent>, id: &str) -> Vec<u64> {
    let mut progress = Vec::new();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the file arrives in time")
            .expect("events keep up");
        match ev {
            MsgEvent::Message { message } if message.id == id => {
                assert_eq!(message.files.len(), 1, "the message names its file");
                if message.files[0].state == FileState::Done {
                    return progress;
                }
            }
            MsgEvent::File { message, file, .. } if message == id => {
                progress.push(file.received);
                match file.state {
                    FileState::Done => return progress,
                    FileState::Failed => panic!("the download failed: {:?}", file.error),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// Makes `a` and `b` contacts, sends `b` a random 10 MiB photo from `a` and waits until
/// it is there with the sender's bytes: the message, its bytes and the progress seen.
async fn deliver(net: &Testnet, a: usize, b: usize) -> (Message, Vec<u8>, Vec<u64>) {
    nodus_testnet::msg::introduce(msg(net, a), msg(net, b), "alice", "bob")
        .await
        .unwrap();
    let bytes = random_bytes(SIZE);
    let mut rx = msg(net, b).events();
    let sent = send_file(msg(net, a), "bob", &bytes, "photo.jpg").await;
    assert_eq!(sent.files[0].state, FileState::Offered);
    let progress = file_done(&mut rx, &sent.id).await;
    let path = msg(net, b)
        .file_path(&sent.files[0].hash)
        .expect("the file is here");
    assert!(
        std::fs::read(path).unwrap() == bytes,
        "the bytes are the sender's"
    );
    (sent, bytes, progress)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mib_file_arrives_whole_with_progress_once_and_only_for_its_recipient() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(4, dir.path()).await.unwrap();
    net.wait_connected(3, T).await.unwrap();
    let (a, b, stranger) = (1, 2, 3);
    let (sent, bytes, progress) = deliver(&net, a, b).await;
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {progress:?}"
    );
    assert!(
        progress.iter().any(|p| *p > 0 && (*p as usize) < SIZE),
        "progress was shown on the way: {progress:?}"
    );
    assert_eq!(progress.last().copied(), Some(SIZE as u64));
    let alice = net.node(a).peer_id().to_string();
    let got = msg(&net, b).history(&alice).await.unwrap();
    let m = got
        .iter()
        .find(|m| m.id == sent.id)
        .expect("in bob's history");
    assert_eq!(
        (m.text.as_str(), m.files[0].name.as_str(), m.files[0].state),
        ("a photo", "photo.jpg", FileState::Done)
    );

    // The same bytes again: done on arrival, nothing fetched.
    let mut rx = msg(&net, b).events();
    let again = send_file(msg(&net, a), "bob", &bytes, "same.jpg").await;
    loop {
        match tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap() {
            MsgEvent::Message { message } if message.id == again.id => {
                assert_eq!(message.files[0].state, FileState::Done);
                break;
            }
            MsgEvent::File { message, .. } => {
                assert_ne!(message, again.id, "nothing to fetch for bytes bob has")
            }
            _ => {}
        }
    }

    // A node alice offered nothing asks for the file: refused, nothing sent.
    let hash: [u8; 32] = hex::decode(&sent.files[0].hash)
        .unwrap()
        .try_into()
        .unwrap();
    let alice_peer = net.node(a).peer_id();
    let mut s = net
        .node(stranger)
        .net
        .open_stream(alice_peer, FILE_PROTOCOL)
        .await
        .unwrap();
    wire::write_frame(&mut s, &FileRequest { hash, from: 0 })
        .await
        .unwrap();
    s.flush().await.unwrap();
    let reply: FileReply = wire::read_frame(&mut s).await.unwrap().unwrap();
    assert!(
        matches!(&reply, FileReply::Refused(r) if r.contains("not offered") || r.contains("no file")),
        "{reply:?}"
    );
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "no chunk follows a refusal");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_arrives_through_a_relay() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(2, dir.path()).await.unwrap();
    net.wait_connected(1, T).await.unwrap();
    let relays = vec![net.node(0).p2p_addr("tcp").unwrap().to_string()];
    // Neither can be dialed: everything between them goes through node 0's circuits.
    let a = net.add_node(hidden_node_config(5, &relays)).await.unwrap();
    let b = net.add_node(hidden_node_config(4, &relays)).await.unwrap();
    net.wait_circuits(b, 1, T).await.unwrap();
    net.wait_circuits(a, 1, T).await.unwrap();
    deliver(&net, a, b).await;
    let bob = net.node(b).peer_id().to_string();
    assert!(
        net.relay_in_use(a, &bob).await.is_some(),
        "alice reaches bob through the relay"
    );
    net.shutdown().await;
}
