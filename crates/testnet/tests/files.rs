//! Files sent with messages, between real nodes on loopback: a 10 MiB photo directly
//! and through a relay, with its progress; the same bytes again (stored once, not
//! fetched again); a node that asks for a file it was not offered, refused; and a
//! sender whose bytes are not what it offered, refused for good; offers past the
//! recipient's quota for received files, not fetched.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use nodus_msg::wire::{self, FILE_PROTOCOL, FileReply, FileRequest};
use nodus_msg::{FileState, Message, MsgEvent, MsgHandle, NewFile};
use nodus_testnet::msg::send_file;
use nodus_testnet::{Testnet, hidden_node_config};

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

/// Makes `a` and `b` contacts, sends `b` a random 10 MiB photo from `a` and waits until
/// it is there with the sender's bytes: the message, its bytes and the progress seen.
async fn deliver(net: &Testnet, a: usize, b: usize) -> (Message, Vec<u8>, Vec<u64>) {
    nodus_testnet::msg::introduce(msg(net, a), msg(net, b), "alice", "bob")
        .await
        .unwrap();
    let bytes = random_bytes(SIZE);
    let arrival = send_file(msg(net, a), msg(net, b), "bob", (&bytes, "photo.jpg"), T)
        .await
        .unwrap();
    let (sent, progress) = (arrival.message, arrival.progress);
    assert_eq!(sent.files[0].state, FileState::Offered);
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
        ("", "photo.jpg", FileState::Done)
    );

    // The same bytes again: done on arrival, nothing fetched.
    let again = send_file(msg(&net, a), msg(&net, b), "bob", (&bytes, "same.jpg"), T)
        .await
        .unwrap();
    assert!(
        again.progress.is_empty(),
        "nothing to fetch for bytes bob has: {:?}",
        again.progress
    );

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

    // A sender whose bytes are not what its message said (its stored copy was changed
    // under it): bob refuses the file for good and keeps nothing of it.
    let pieces = vec![Ok::<_, std::convert::Infallible>(random_bytes(1 << 20))];
    let (hash, _) = msg(&net, a)
        .import_file(futures::stream::iter(pieces))
        .await
        .unwrap();
    let stored = msg(&net, a).file_path(&hash).unwrap();
    std::fs::write(&stored, random_bytes(1 << 20)).unwrap();
    let mut rx = msg(&net, b).events();
    let file = NewFile {
        hash: hash.clone(),
        name: "changed.bin".into(),
        mime: None,
    };
    let m = msg(&net, a)
        .send_files("bob", "", vec![file])
        .await
        .unwrap();
    let error = loop {
        match tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap() {
            MsgEvent::File { message, file, .. } if message == m.id => match file.state {
                FileState::Failed => break file.error.unwrap_or_default(),
                FileState::Done => panic!("bytes that do not hash to the offer were kept"),
                _ => {}
            },
            _ => {}
        }
    };
    assert!(error.contains("does not hash"), "{error}");
    assert!(
        msg(&net, b).file_path(&hash).is_none(),
        "nothing of it kept"
    );
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

/// Files fetched from others count against `[msg] max_received_files_mib`, kept or on
/// their way: an offer that would pass it is not fetched, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_past_the_received_quota_are_not_fetched() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(2, dir.path()).await.unwrap();
    let mut config = nodus_testnet::node_config(nodus_testnet::node_ip(2), &net.bootstrap_addrs());
    config
        .edit::<nodus_msg::MsgConfig>(|m| m.max_received_files_mib = 3)
        .unwrap();
    let b = net.add_node(config).await.unwrap();
    net.wait_connected(2, T).await.unwrap();
    let a = 1;
    nodus_testnet::msg::introduce(msg(&net, a), msg(&net, b), "alice", "bob")
        .await
        .unwrap();

    // 2 MiB fits in bob's 3 MiB; 2 MiB more would not, whether sent alone or beside a
    // file that fits.
    let first = random_bytes(2 << 20);
    let arrived = send_file(msg(&net, a), msg(&net, b), "bob", (&first, "a.bin"), T)
        .await
        .unwrap();
    let over = random_bytes(2 << 20);
    let refused = send_file(msg(&net, a), msg(&net, b), "bob", (&over, "b.bin"), T).await;
    let error = match refused {
        Err(nodus_testnet::msg::FileError::Failed(e)) => e,
        other => panic!("a file past the quota was not refused: {other:?}"),
    };
    assert!(error.contains("max_received_files_mib"), "{error}");
    let pieces = vec![Ok::<_, std::convert::Infallible>(over.clone())];
    let (hash, _) = msg(&net, a)
        .import_file(futures::stream::iter(pieces))
        .await
        .unwrap();
    assert!(msg(&net, b).file_path(&hash).is_none(), "nothing fetched");

    // A file removed by hand no longer counts: the same offer now arrives.
    let kept = &arrived.message.files[0].hash;
    std::fs::remove_file(msg(&net, b).file_path(kept).unwrap()).unwrap();
    send_file(msg(&net, a), msg(&net, b), "bob", (&over, "b.bin"), T)
        .await
        .unwrap();
    net.shutdown().await;
}
