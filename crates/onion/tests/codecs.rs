//! Every decoder of peer (or local program) input in this crate, run through the oracle its fuzz target
//! uses: on random bytes (proptest) and on the corpus the fuzzers keep in the repo
//! (`fuzz/corpus/<target>/`).

#[path = "oracle/onion_cell.rs"]
mod onion_cell;
#[path = "oracle/onion_descriptor.rs"]
mod onion_descriptor;
#[path = "oracle/onion_hs_message.rs"]
mod onion_hs_message;
#[path = "oracle/onion_lists.rs"]
mod onion_lists;
#[path = "oracle/onion_service_descriptor.rs"]
mod onion_service_descriptor;
#[path = "oracle/onion_socks.rs"]
mod onion_socks;

#[path = "../../../fuzz/replay.rs"]
mod replay;

use proptest::prelude::*;

#[test]
fn the_kept_corpus_passes_every_oracle() {
    replay::replay(&[
        ("onion_cell", onion_cell::check as fn(&[u8])),
        ("onion_socks", onion_socks::check as fn(&[u8])),
        ("onion_descriptor", onion_descriptor::check as fn(&[u8])),
        (
            "onion_service_descriptor",
            onion_service_descriptor::check as fn(&[u8]),
        ),
        ("onion_hs_message", onion_hs_message::check as fn(&[u8])),
        ("onion_lists", onion_lists::check as fn(&[u8])),
    ]);
}

/// Real onion-service messages for the corpus and the properties below: a signed
/// descriptor, an ESTABLISH_INTRO for binding `[7; 32]`, an INTRODUCE, a RENDEZVOUS1.
fn real_hs_inputs() -> (Vec<u8>, Vec<Vec<u8>>) {
    use nodus_onion::client::Hop;
    use nodus_onion::hs::address::ServiceKeys;
    use nodus_onion::hs::messages::{EstablishIntro, IntroPayload, Introduce};
    let keys = ServiceKeys::generate();
    let hop = Hop {
        peer: libp2p::PeerId::random(),
        onion_key: [4; 32],
    };
    let descriptor =
        nodus_onion::hs::descriptor::sign(&keys, &[hop.clone(), hop.clone()], 1_000).unwrap();
    let establish = EstablishIntro::new(&keys, &[7; 32]).unwrap().encode();
    let payload = IntroPayload {
        rendezvous: hop.peer.to_bytes(),
        rendezvous_key: [5; 32],
        cookie: [6; 20],
        create: vec![1; nodus_onion::ntor::CREATE_LEN],
    };
    let introduce = Introduce::seal(keys.id(), &keys.ntor.public(), &payload)
        .unwrap()
        .encode()
        .unwrap();
    let rendezvous = [[9u8; 20].as_slice(), &[2u8; 64]].concat();
    let messages = [(0u8, establish), (1, introduce), (2, rendezvous)]
        .into_iter()
        .map(|(k, m)| [vec![k], m].concat())
        .collect();
    (descriptor, messages)
}

/// An exit's signed descriptor with a ticket of 8 bits (the default, 14, takes a minute).
fn real_relay_descriptor() -> Vec<u8> {
    let keys = libp2p::identity::Keypair::generate_ed25519();
    let peer = keys.public().to_peer_id();
    let addr: libp2p::Multiaddr = "/ip4/10.0.0.1/tcp/1".parse().unwrap();
    let bits = nodus_onion::OnionConfig::default().admission_bits;
    let ticket = nodus_onion::admission::solve(&peer, &[3; 32], 0, bits.min(8), 0);
    let signed = nodus_onion::descriptor::Descriptor::new(peer, [3; 32], true, &[addr], 5, ticket)
        .sign(&keys)
        .unwrap();
    onion_descriptor::check(&signed);
    signed
}

/// A lists answer as a node writes it: a relay's descriptor and `service`'s.
fn real_lists_answer(service: &[u8]) -> Vec<u8> {
    use nodus_onion::lists::Item;
    let relay = real_relay_descriptor();
    let mut answer = Vec::new();
    Item::Relay(relay).encode(&mut answer);
    Item::Service(service.to_vec()).encode(&mut answer);
    answer
}

/// Writes the real inputs into the corpus when `NODUS_WRITE_CORPUS` is set (run once
/// when the formats change).
#[test]
fn real_onion_service_inputs_pass_and_seed_the_corpus() {
    let (descriptor, messages) = real_hs_inputs();
    onion_service_descriptor::check(&descriptor);
    for m in &messages {
        onion_hs_message::check(m);
    }
    let answer = real_lists_answer(&descriptor);
    onion_lists::check(&answer);
    if std::env::var_os("NODUS_WRITE_CORPUS").is_some() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        std::fs::create_dir_all(dir.join("onion_lists")).unwrap();
        std::fs::write(dir.join("onion_lists/real"), &answer).unwrap();
        std::fs::write(dir.join("onion_descriptor/exit"), real_relay_descriptor()).unwrap();
        std::fs::write(dir.join("onion_service_descriptor/real"), &descriptor).unwrap();
        for (i, m) in messages.iter().enumerate() {
            std::fs::write(dir.join(format!("onion_hs_message/real-{i}")), m).unwrap();
        }
    }
}

proptest! {
    #[test]
    fn onion_descriptor_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
        onion_descriptor::check(&data);
    }

    /// Real signed descriptors with a byte changed: refused or still well-formed.
    #[test]
    fn onion_descriptor_changed(at in any::<usize>(), to in any::<u8>(), exit in any::<bool>()) {
        let keys = libp2p::identity::Keypair::generate_ed25519();
        let addr: libp2p::Multiaddr = "/ip4/10.0.0.1/tcp/1".parse().unwrap();
        let d = nodus_onion::descriptor::Descriptor::new(
            keys.public().to_peer_id(), [3; 32], exit, &[addr], 5,
            nodus_onion::admission::Ticket { epoch: 0, nonce: 0 });
        let mut signed = d.sign(&keys).unwrap();
        let i = at % signed.len();
        signed[i] = to;
        onion_descriptor::check(&signed);
    }
    #[test]
    fn onion_service_descriptor_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
        onion_service_descriptor::check(&data);
    }

    /// Real onion-service inputs with one byte changed: refused, or still well-formed.
    #[test]
    fn onion_service_inputs_changed(at in any::<usize>(), to in any::<u8>(), which in 0usize..4) {
        let (descriptor, messages) = real_hs_inputs();
        let mut input = if which == 3 { descriptor } else { messages[which].clone() };
        let i = at % input.len();
        input[i] = to;
        if which == 3 {
            onion_service_descriptor::check(&input);
        } else {
            onion_hs_message::check(&input);
        }
    }

    #[test]
    fn onion_lists_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..9000)) {
        onion_lists::check(&data);
    }

    /// A real answer with one byte changed: refused, or still items within bounds.
    #[test]
    fn onion_lists_changed(at in any::<usize>(), to in any::<u8>()) {
        let (descriptor, _) = real_hs_inputs();
        let mut answer = real_lists_answer(&descriptor);
        let i = at % answer.len();
        answer[i] = to;
        onion_lists::check(&answer);
    }

    #[test]
    fn onion_hs_message_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        onion_hs_message::check(&data);
    }

    #[test]
    fn onion_socks_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        onion_socks::check(&data);
    }

    /// Greetings that get past the first bytes: any request after a no-auth greeting.
    #[test]
    fn onion_socks_requests(rest in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut data = vec![5, 1, 0, 5, 1, 0];
        data.extend_from_slice(&rest);
        onion_socks::check(&data);
    }

    #[test]
    fn onion_cell_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..4200)) {
        onion_cell::check(&data);
    }

    /// Relay cells with a plausible header: a recognized payload of any length field
    /// and command.
    #[test]
    fn onion_relay_payloads(len in any::<u16>(), command in any::<u8>(), stream in any::<u16>()) {
        let mut data = vec![3u8, 0, 0];
        data.extend_from_slice(&stream.to_be_bytes());
        data.extend_from_slice(&[0u8; 8]);
        data.extend_from_slice(&len.to_be_bytes());
        data.push(command);
        onion_cell::check(&data);
    }

    /// BEGIN_OVERLAY with a real target, parsed back to it, then with any byte changed.
    #[test]
    fn onion_begin_overlay_targets(protocol in "/[a-z0-9/._-]{0,60}", at in any::<usize>(), to in any::<u8>()) {
        use nodus_onion::cell::{Cell, RelayCommand, RelayMsg};
        use nodus_onion::client::{overlay_target, parse_overlay_target};
        let peer = libp2p::PeerId::random();
        let mut data = overlay_target(&peer, &protocol).unwrap();
        prop_assert_eq!(parse_overlay_target(&data), Some((peer, protocol.as_str())));
        let i = at % data.len();
        data[i] = to;
        let m = RelayMsg::new(RelayCommand::BeginOverlay, 1, data);
        let mut cell = [0u8; nodus_onion::cell::CELL_LEN];
        Cell::relay(m.encode().unwrap()).encode(&mut cell);
        onion_cell::check(&cell);
    }
}
