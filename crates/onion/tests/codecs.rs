//! Every decoder of peer (or local program) input in this crate, run through the oracle its fuzz target
//! uses: on random bytes (proptest) and on the corpus the fuzzers keep in the repo
//! (`fuzz/corpus/<target>/`).

#[path = "oracle/onion_cell.rs"]
mod onion_cell;
#[path = "oracle/onion_descriptor.rs"]
mod onion_descriptor;
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
    ]);
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
            keys.public().to_peer_id(), [3; 32], exit, &[addr], 5);
        let mut signed = d.sign(&keys).unwrap();
        let i = at % signed.len();
        signed[i] = to;
        onion_descriptor::check(&signed);
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
}
