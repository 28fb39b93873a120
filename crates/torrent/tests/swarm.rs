//! Sessions on 127.0.0.1 exchanging real files over real sockets: every torrent version,
//! magnet links (metadata exchange), a download from three partial seeds at once, and a
//! peer whose data fails its hash.

mod common;

use std::time::Duration;

use common::*;
use nodus_torrent::bitfield::Bitfield;
use nodus_torrent::metainfo::Metainfo;
use nodus_torrent::store::{Settings, Store};
use nodus_torrent::{AddRequest, TorrentState};

async fn transfer(version: &str, multi: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let seed = node(&tmp.path().join("seed")).await;
    let leech = node(&tmp.path().join("leech")).await;
    let src = tmp.path().join("share").join("data");
    if multi {
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a.bin"), content(700_000, 1)).unwrap();
        std::fs::write(src.join("sub/b.bin"), content(40_000, 2)).unwrap();
        std::fs::write(src.join("sub/empty"), b"").unwrap();
        std::fs::write(src.join("z.bin"), content(300_001, 3)).unwrap();
        // Links are left out of every format alike (issue 17 point 14).
        std::os::unix::fs::symlink(src.join("a.bin"), src.join("link-to-a")).unwrap();
        std::os::unix::fs::symlink(src.join("sub"), src.join("sub-link")).unwrap();
    } else {
        std::fs::create_dir_all(src.parent().unwrap()).unwrap();
        std::fs::write(&src, content(1_234_567, 4)).unwrap();
    }
    let shared = share_as(&seed, &src, Some(version), Some(64 * 1024)).await;
    let meta = Metainfo::from_bytes(&std::fs::read(&shared.torrent_path).unwrap()).unwrap();
    assert_eq!(meta.hashes.v1.is_some(), version != "v2");
    assert_eq!(meta.hashes.v2.is_some(), version != "v1");
    let (out, _) = download(&leech, shared.torrent_path.clone(), peer_of(&seed), 30).await;
    assert_same_tree(&src, &out.join("data"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_single_file() {
    transfer("v1", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_multi_file() {
    transfer("v1", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_multi_file() {
    transfer("v2", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_multi_file() {
    transfer("hybrid", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magnet_link_fetches_metadata_from_the_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = node(&tmp.path().join("seed")).await;
    let leech = node(&tmp.path().join("leech")).await;
    let src = tmp.path().join("movie.bin");
    std::fs::write(&src, content(3_000_000, 9)).unwrap();
    let shared = share(&seed, &src).await;
    let out = leech.dir.join("out");
    let info = leech
        .handle
        .add(AddRequest {
            source: shared.magnet.clone(),
            out_dir: Some(out.display().to_string()),
            peers: peer_of(&seed),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(info.state, TorrentState::FetchingMetadata);
    let done = wait_complete(&leech.handle, &info.id, 30).await;
    assert_eq!(done.name, "movie.bin");
    assert_eq!(
        std::fs::read(out.join("movie.bin")).unwrap(),
        std::fs::read(&src).unwrap()
    );
    // Neither DHT was given a bootstrap node: each learned the other's from the PORT
    // message (BEP 5) on the BitTorrent connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seed.handle.dht_nodes() == 0 || leech.handle.dht_nodes() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no DHT node learned from PORT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No tracker and no peer given: the downloader has only an infohash and finds the
/// seeder through the mainline DHT (a third node is the DHT's entry point for both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trackerless_download_through_the_dht() {
    let tmp = tempfile::tempdir().unwrap();
    let router = node(&tmp.path().join("router")).await;
    let seed = node_with_dht(&tmp.path().join("seed"), dht_of(&router)).await;
    let leech = node_with_dht(&tmp.path().join("leech"), dht_of(&router)).await;
    fetch_by_infohash(&seed, &leech, &tmp.path().join("album.bin"), 2_000_000, 60).await;
    assert!(
        router.handle.dht_nodes() >= 2,
        "the router knows both nodes"
    );
}

/// Garbage sent to the DHT port is counted and dropped unanswered; the node goes on
/// answering well-formed queries, whatever length of transaction id they carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_drops_garbage_and_keeps_answering() {
    use nodus_torrent::dht::krpc::{self, Message, Query};
    let tmp = tempfile::tempdir().unwrap();
    let n = node(&tmp.path().join("n")).await;
    let dht = n.handle.dht_addr().unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 1500];
    for junk in [
        &b"\xff\x00garbage"[..],
        b"d1:t2:aa1:y1:qe",
        b"i42e",
        &[b'd'; 1400],
    ] {
        sock.send_to(junk, dht).await.unwrap();
    }
    for tid in [&b"x"[..], b"ab", b"abcd", b"0123456789"] {
        sock.send_to(&krpc::encode_query(tid, &[7; 20], &Query::Ping), dht)
            .await
            .unwrap();
        // The node may also query us (it added us to its table when we pinged it):
        // those are skipped; the answer to the ping must come.
        let answer = async {
            loop {
                let (len, _) = sock.recv_from(&mut buf).await.unwrap();
                match krpc::decode(&buf[..len]).unwrap() {
                    Message::Query(_) => continue,
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("an answer to a ping")
        {
            Message::Response(r) => assert_eq!(r.tid, tid),
            other => panic!("not a response: {other:?}"),
        }
    }
    assert_eq!(n.handle.dht_bad_packets(), 4);
}

/// A node that requires encryption downloads over RC4 (MSE) from one that prefers
/// it, and refuses a peer that opens with a plain BitTorrent handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_encryption_is_rc4_and_refuses_plain_peers() {
    use nodus_torrent::Encryption;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let seed = node_with(&tmp.path().join("seed"), |c| {
        c.encryption = Encryption::Require
    })
    .await;
    let leech = node(&tmp.path().join("leech")).await;
    let src = tmp.path().join("secret.bin");
    std::fs::write(&src, content(3_000_000, 21)).unwrap();
    let shared = share(&seed, &src).await;
    let (out, done) = download(&leech, shared.torrent_path.clone(), peer_of(&seed), 30).await;
    assert_eq!(
        std::fs::read(out.join("secret.bin")).unwrap(),
        std::fs::read(&src).unwrap()
    );
    let from_seed = done.peers.iter().find(|p| p.addr == peer_of(&seed)[0]);
    assert!(
        from_seed.is_some_and(|p| p.encrypted),
        "RC4 to the seed: {:?}",
        done.peers
    );

    // A plain handshake for the same torrent gets no answer but a closed connection.
    let mut plain = tokio::net::TcpStream::connect(seed.handle.listen_addr().unwrap())
        .await
        .unwrap();
    let hash = hex::decode(shared.infohash_v1.unwrap()).unwrap();
    let mut hs = b"\x13BitTorrent protocol".to_vec();
    hs.extend_from_slice(&[0; 8]);
    hs.extend_from_slice(&hash);
    hs.extend_from_slice(b"-XX0001-plainplainpl");
    plain.write_all(&hs).await.unwrap();
    let mut buf = [0u8; 68];
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut buf))
        .await
        .expect("closed, not left hanging");
    assert!(matches!(read, Ok(0) | Err(_)), "a plain peer was answered");
}

/// "Completed" is news of a download that just finished: sharing one's own files, or
/// restarting with a finished torrent, reports nothing; finishing a download does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_is_reported_once_for_a_finished_download() {
    use nodus_torrent::TorrentEvent;
    let completed = |rx: &mut tokio::sync::broadcast::Receiver<TorrentEvent>| {
        let mut n = 0;
        while let Ok(e) = rx.try_recv() {
            n += matches!(e, TorrentEvent::Completed { .. }) as usize;
        }
        n
    };
    let tmp = tempfile::tempdir().unwrap();
    let seed = node(&tmp.path().join("seed")).await;
    let mut seed_events = seed.handle.events();
    let src = tmp.path().join("doc.bin");
    std::fs::write(&src, content(600_000, 8)).unwrap();
    let shared = share(&seed, &src).await;
    let leech_dir = tmp.path().join("leech");
    let leech = node(&leech_dir).await;
    let mut leech_events = leech.handle.events();
    download(&leech, shared.torrent_path.clone(), peer_of(&seed), 30).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(completed(&mut seed_events), 0, "sharing is not completing");
    assert_eq!(
        completed(&mut leech_events),
        1,
        "one download, one completion"
    );
    drop(leech);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = node(&leech_dir).await;
    let mut events = again.handle.events();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(again.handle.list().len(), 1, "the torrent was resumed");
    assert_eq!(completed(&mut events), 0, "a restart is not a completion");
}

/// Three seeds hold different thirds of a file; a fourth node downloads from all three
/// at once and credits each with its third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_from_three_partial_seeds_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("share/file.bin");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    std::fs::write(&src, content(3 * 16 * 65536, 7)).unwrap();
    let meta = nodus_torrent::create::create(
        &src,
        &nodus_torrent::create::CreateOptions {
            piece_length: Some(65536),
            ..Default::default()
        },
    )
    .unwrap();
    let n = meta.info.num_pieces;
    assert_eq!(n, 48);
    let id = hex::encode(meta.hashes.wire_id());
    let mut seeds = Vec::new();
    for k in 0..3u32 {
        let dir = tmp.path().join(format!("seed{k}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut have = Bitfield::new(n);
        for i in (k * n / 3)..((k + 1) * n / 3) {
            have.set(i);
        }
        claim(&dir, &meta, src.parent().unwrap(), &have);
        seeds.push(node(&dir).await);
    }
    for s in &seeds {
        let info = s.handle.get(&id).unwrap();
        assert_eq!(info.pieces_have, n / 3, "each seed holds one third");
    }
    let leech = node(&tmp.path().join("leech")).await;
    let out = tmp.path().join("out");
    let peers: Vec<String> = seeds.iter().flat_map(peer_of).collect();
    let torrent = tmp.path().join("file.torrent");
    std::fs::write(&torrent, meta.to_bytes()).unwrap();
    leech
        .handle
        .add(AddRequest {
            source: torrent.display().to_string(),
            out_dir: Some(out.display().to_string()),
            peers: peers.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let done = wait_complete(&leech.handle, &id, 30).await;
    assert_eq!(
        std::fs::read(out.join("file.bin")).unwrap(),
        std::fs::read(&src).unwrap()
    );
    let credited: Vec<u32> = peers
        .iter()
        .map(|p| {
            done.pieces_from
                .iter()
                .find(|(a, _)| a == p)
                .map(|(_, c)| *c)
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(credited, vec![16, 16, 16], "{:?}", done.pieces_from);
}

/// Writes resume state claiming `have` for a torrent whose data is in `save_dir`, so the
/// node started on `dir` serves those pieces without checking them.
fn claim(dir: &std::path::Path, meta: &Metainfo, save_dir: &std::path::Path, have: &Bitfield) {
    std::fs::create_dir_all(dir).unwrap();
    let store = Store::open(&dir.join("torrent.redb")).unwrap();
    let id = hex::encode(meta.hashes.wire_id());
    store
        .save(
            &id,
            &Settings::new(save_dir),
            Some(&meta.to_bytes()),
            Some(have.as_bytes()),
        )
        .unwrap();
}

/// A BitTorrent peer that claims every piece and answers every request with garbage, on
/// a loopback address of its own (bans are by IP). Returns its address.
async fn corrupt_seeder(info_hash: [u8; 20], have: Bitfield) -> String {
    use bytes::BytesMut;
    use nodus_torrent::wire::{Handshake, Message};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ip = format!("127.0.251.{}", 1 + std::process::id() % 250);
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let have = have.clone();
            tokio::spawn(async move {
                let mut hs = [0u8; 68];
                c.read_exact(&mut hs[..20]).await?;
                if hs[..20] != *b"\x13BitTorrent protocol" {
                    // Encrypted (MSE): refused, so the leech tries plain at once.
                    return Ok(());
                }
                c.read_exact(&mut hs[20..]).await?;
                let ours = Handshake {
                    reserved: [0; 8],
                    info_hash,
                    peer_id: *b"-XX0001-corruptcorru",
                };
                let mut out = BytesMut::new();
                Message::Bitfield(have.as_bytes().to_vec().into()).encode(&mut out);
                Message::Unchoke.encode(&mut out);
                c.write_all(&ours.encode()).await?;
                c.write_all(&out).await?;
                let mut buf = BytesMut::new();
                loop {
                    while let Ok(Some(m)) = Message::decode(&mut buf) {
                        if let Message::Request {
                            index,
                            begin,
                            length,
                        } = m
                        {
                            let mut out = BytesMut::new();
                            let data = vec![0x5a; length as usize].into();
                            Message::Piece { index, begin, data }.encode(&mut out);
                            c.write_all(&out).await?;
                        }
                    }
                    if c.read_buf(&mut buf).await? == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                }
            });
        }
    });
    addr
}

/// A peer that serves corrupt data is caught by the hash check, struck, and banned
/// after three bad pieces; the pieces come from an honest peer instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_peer_is_banned_and_pieces_refetched() {
    let tmp = tempfile::tempdir().unwrap();
    let good_dir = tmp.path().join("good");
    std::fs::create_dir_all(&good_dir).unwrap();
    let data = content(40 * 65536, 21);
    std::fs::write(good_dir.join("f.bin"), &data).unwrap();
    let meta = nodus_torrent::create::create(
        &good_dir.join("f.bin"),
        &nodus_torrent::create::CreateOptions {
            piece_length: Some(65536),
            ..Default::default()
        },
    )
    .unwrap();
    let id = hex::encode(meta.hashes.wire_id());
    let full = Bitfield::full(meta.info.num_pieces);
    claim(&tmp.path().join("n_good"), &meta, &good_dir, &full);
    // A nodus node checks what it serves, so the corrupt peer is a hand-made one.
    let bad = corrupt_seeder(meta.hashes.wire_id(), full).await;
    let good = node(&tmp.path().join("n_good")).await;
    let leech = node(&tmp.path().join("leech")).await;
    let torrent = tmp.path().join("f.torrent");
    std::fs::write(&torrent, meta.to_bytes()).unwrap();
    let out = tmp.path().join("out");
    leech
        .handle
        .add(AddRequest {
            source: torrent.display().to_string(),
            out_dir: Some(out.display().to_string()),
            peers: vec![bad.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let i = leech.handle.get(&id).unwrap();
        if i.hash_failures >= 3 && i.peers.is_empty() {
            assert_eq!(i.pieces_have, 0, "no corrupt piece accepted");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{i:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Banned: offered again, it is not connected.
    leech
        .handle
        .add_peers(&id, std::slice::from_ref(&bad))
        .unwrap();
    leech.handle.add_peers(&id, &peer_of(&good)).unwrap();
    let done = wait_complete(&leech.handle, &id, 30).await;
    assert_eq!(std::fs::read(out.join("f.bin")).unwrap(), data);
    let bad_addr = bad;
    assert!(
        !done.peers.iter().any(|p| p.addr == bad_addr),
        "{:?}",
        done.peers
    );
    assert!(!done.pieces_from.iter().any(|(a, _)| *a == bad_addr));
}

/// Adding a torrent over data already on disk keeps the pieces that match and fetches
/// only the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_partial_data_is_checked_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = node(&tmp.path().join("seed")).await;
    let src = tmp.path().join("share/f.bin");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    let data = content(20 * 65536, 31);
    std::fs::write(&src, &data).unwrap();
    let shared = share_as(&seed, &src, Some("v1"), Some(65536)).await;
    let leech = node(&tmp.path().join("leech")).await;
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // The first half is right, the rest zeros.
    let mut partial = data.clone();
    partial[10 * 65536..].fill(0);
    std::fs::write(out.join("f.bin"), &partial).unwrap();
    let info = leech
        .handle
        .add(AddRequest {
            source: shared.torrent_path.clone(),
            out_dir: Some(out.display().to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(info.pieces_have, 10, "the ten good pieces were kept");
    leech.handle.add_peers(&info.id, &peer_of(&seed)).unwrap();
    let done = wait_complete(&leech.handle, &info.id, 30).await;
    assert_eq!(std::fs::read(out.join("f.bin")).unwrap(), data);
    assert_eq!(
        done.downloaded,
        10 * 65536,
        "only the missing half was downloaded"
    );
}

/// Two nodes and no router: the seeder announces to the only DHT node it knows, the
/// leecher itself, so the leecher's own store is where the seeder's address is. A lookup
/// that asked only other nodes found nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trackerless_between_two_nodes_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let leech = node(&tmp.path().join("leech")).await;
    let seed = node_with_dht(&tmp.path().join("seed"), dht_of(&leech)).await;
    fetch_by_infohash(&seed, &leech, &tmp.path().join("notes.bin"), 700_000, 30).await;
}

/// `seed` shares a file of `len` bytes written at `src`; `leech`, given only its
/// infohash (no tracker, no peer), downloads it byte for byte, every piece from `seed`.
async fn fetch_by_infohash(
    seed: &Node,
    leech: &Node,
    src: &std::path::Path,
    len: usize,
    secs: u64,
) {
    std::fs::write(src, content(len, 4)).unwrap();
    let shared = share(seed, src).await;
    let (out, done) = download(leech, shared.infohash_v1.clone().unwrap(), vec![], secs).await;
    let name = src.file_name().unwrap();
    assert_eq!(
        std::fs::read(out.join(name)).unwrap(),
        std::fs::read(src).unwrap()
    );
    let seed_addr = seed.handle.listen_addr().unwrap().to_string();
    assert_eq!(
        done.pieces_from,
        vec![(seed_addr, done.pieces_total)],
        "every piece from the seeder found in the DHT: {:?}",
        done.pieces_from
    );
}

/// Issue 17 point 5: idle connections that never handshake cannot hold the port. At the
/// cap of pending handshakes each new one pushes out the oldest, and a real peer still
/// gets in and downloads while the flood holds every slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_lock_peers_out() {
    use nodus_torrent::PENDING_HANDSHAKES;
    use tokio::io::AsyncReadExt;
    let tmp = tempfile::tempdir().unwrap();
    let seed = node(&tmp.path().join("seed")).await;
    let leech = node(&tmp.path().join("leech")).await;
    let src = tmp.path().join("wanted.bin");
    std::fs::write(&src, content(1_000_000, 5)).unwrap();
    let shared = share(&seed, &src).await;
    let addr = seed.handle.listen_addr().unwrap();
    let mut idle = Vec::new();
    for _ in 0..=PENDING_HANDSHAKES {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut buf = [0u8; 1];
    let first = tokio::time::timeout(Duration::from_secs(30), idle[0].read(&mut buf))
        .await
        .expect("the oldest idle connection was kept");
    assert!(matches!(first, Ok(0) | Err(_)));
    assert_eq!(seed.handle.handshakes_evicted(), 1);
    let (out, _) = download(&leech, shared.torrent_path.clone(), peer_of(&seed), 30).await;
    assert_eq!(
        std::fs::read(out.join("wanted.bin")).unwrap(),
        std::fs::read(&src).unwrap()
    );
    drop(idle);
}

/// Issue 17 points 9 and 17: a link planted in the output directory that leads out of it
/// is not written through; the disk error stops the torrent with its reason and strikes
/// no peer (it used to count as hash failures and get honest peers banned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_link_is_not_written_through_and_strikes_no_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = node(&tmp.path().join("seed")).await;
    let leech = node(&tmp.path().join("leech")).await;
    let src = tmp.path().join("report.pdf");
    std::fs::write(&src, content(600_000, 9)).unwrap();
    let shared = share(&seed, &src).await;
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out = leech.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("report.pdf")).unwrap();
    let info = leech
        .handle
        .add(nodus_torrent::AddRequest {
            source: shared.torrent_path.clone(),
            out_dir: Some(out.display().to_string()),
            peers: peer_of(&seed),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let stopped = loop {
        let t = leech.handle.get(&info.id).unwrap();
        if t.error.is_some() {
            break t;
        }
        assert!(tokio::time::Instant::now() < deadline, "no error: {t:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = stopped.error.unwrap();
    assert!(
        error.contains("leads out of the download directory"),
        "{error}"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let t = leech.handle.get(&info.id).unwrap();
    assert_eq!(t.state, TorrentState::Error, "{t:#?}");
    assert_eq!(t.hash_failures, 0);
}

/// Issue 17 point 7: a web seed that answers a range with no Content-Length and a body
/// that does not end is read no further than the range asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_web_seed_body_is_cut_at_the_range() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let seed = node(&tmp.path().join("seed")).await;
    let leech = node(&tmp.path().join("leech")).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    const LIMIT: u64 = 256 << 20;
    // Sends until the client hangs up (or LIMIT); reports how much it could send.
    let server = tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 4096];
        let _ = c.read(&mut head).await;
        c.write_all(b"HTTP/1.1 206 Partial Content\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < LIMIT && c.write_all(&chunk).await.is_ok() {
            sent += chunk.len() as u64;
        }
        sent
    });
    let src = tmp.path().join("movie.bin");
    std::fs::write(&src, content(2_000_000, 3)).unwrap();
    let shared = seed
        .handle
        .share(nodus_torrent::ShareRequest {
            path: src.display().to_string(),
            version: Some("v1".into()),
            trackers: vec![],
            web_seeds: vec![url],
            piece_length: None,
        })
        .await
        .unwrap();
    leech
        .handle
        .add(AddRequest {
            source: shared.torrent_path.clone(),
            out_dir: Some(leech.dir.join("out").display().to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    let sent = tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("the web seed's answer was read on and on")
        .unwrap();
    assert!(sent < LIMIT, "read {sent} bytes of an endless answer");
}

/// Issue 17 point 8: a shared file changed under a running node. The changed piece is
/// checked as it is read for upload, never sent, and no longer claimed; the downloader
/// gets every other piece and strikes nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piece_changed_on_disk_is_not_served_and_no_longer_claimed() {
    use std::io::{Seek, SeekFrom, Write};
    let tmp = tempfile::tempdir().unwrap();
    let seed = node(&tmp.path().join("seed")).await;
    let leech = node(&tmp.path().join("leech")).await;
    let src = tmp.path().join("notes.bin");
    std::fs::write(&src, content(2_000_000, 17)).unwrap();
    let shared = share_as(&seed, &src, Some("v1"), Some(65536)).await;
    let total = shared.pieces;
    let mut f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.seek(SeekFrom::Start(100_000)).unwrap();
    f.write_all(b"edited in place").unwrap();
    drop(f);
    let info = leech
        .handle
        .add(AddRequest {
            source: shared.torrent_path.clone(),
            out_dir: Some(leech.dir.join("out").display().to_string()),
            peers: peer_of(&seed),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (s, l) = (
            seed.handle.get(&shared.id).unwrap(),
            leech.handle.get(&info.id).unwrap(),
        );
        if s.pieces_have == total - 1 && l.pieces_have == total - 1 {
            assert_eq!(l.hash_failures, 0, "{l:#?}");
            assert_ne!(s.state, TorrentState::Seeding);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "seed {} of {total}, leech {} (hash failures {})",
            s.pieces_have,
            l.pieces_have,
            l.hash_failures
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 17 point 13: a node whose BitTorrent listener is bound to one address sends
/// from it: its tracker announces (HTTP and UDP) come from it, so the tracker hands out
/// the address it listens on, and its connections to peers come from it. Each node here
/// has a loopback address of its own and the trackers sit on 127.0.0.1, so an announce
/// from 127.0.0.1 would hand out an address nobody listens on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_node_announces_and_connects_from_its_address() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let u = tokio::net::UdpSocket::bind(addr).await.unwrap();
    tokio::spawn(nodus_torrent::tracker_server::serve_with(l, Some(u)));
    for url in [
        format!("http://{addr}/announce"),
        format!("udp://{addr}/announce"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let seed = node(&tmp.path().join("seed")).await;
        let leech = node(&tmp.path().join("leech")).await;
        let src = tmp.path().join("bound.bin");
        std::fs::write(&src, content(700_000, 23)).unwrap();
        let shared = seed
            .handle
            .share(nodus_torrent::ShareRequest {
                path: src.display().to_string(),
                version: None,
                trackers: vec![url.clone()],
                web_seeds: vec![],
                piece_length: None,
            })
            .await
            .unwrap();
        // The only peer given is a listener that shows where connections come from;
        // the tracker is the only way to the seed.
        let watcher = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let watched = vec![watcher.local_addr().unwrap().to_string()];
        let (out, done) = download(&leech, shared.torrent_path.clone(), watched, 60).await;
        let (_, from) = watcher.accept().await.unwrap();
        assert_eq!(
            std::fs::read(out.join("bound.bin")).unwrap(),
            std::fs::read(&src).unwrap()
        );
        assert!(
            done.pieces_from
                .iter()
                .all(|(a, _)| *a == peer_of(&seed)[0]),
            "{url}: {:?}",
            done.pieces_from
        );
        assert_eq!(from.ip(), leech.handle.listen_addr().unwrap().ip(), "{url}");
    }
}
