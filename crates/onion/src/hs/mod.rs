//! Onion services: a service reachable only through circuits, at an address derived
//! from its key, without the service or its clients learning where the other is.
//!
//! # Protocol (version 1)
//!
//! **Keys and address.** A service holds an Ed25519 identity key `S` and an X25519
//! key `N` (its ntor and sealing key). Its address is
//! `base32(S | checksum | 0x01) + ".nodus"`, lower case, 56 characters before the
//! dot, where `checksum` is the first two bytes of SHA-256(`"nodus-onion-address"` |
//! `S` | `0x01`) ([`address`]).
//!
//! **Introduction points.** The service builds circuits to a few relays and sends each
//! ESTABLISH_INTRO: `S` and its signature over `"nodus-onion-establish-intro-1"` | the
//! binding of that hop's handshake, so the message is good on that circuit only. The
//! relay files the circuit under `S` and answers INTRO_ESTABLISHED.
//!
//! **Descriptor.** The service signs a descriptor with `S` (its introduction points,
//! each as peer id and onion key, and `N`) and spreads it by gossip on
//! `nodus/onion/services/1`, again every `publish_secs` and whenever an introduction
//! point changes ([`descriptor`]). Every node holds every descriptor, so looking one up
//! asks nobody anything.
//!
//! **Connecting.** The client builds a circuit to a relay of its choice, the rendezvous
//! point, and sends ESTABLISH_RENDEZVOUS with a random 20-byte cookie; meanwhile it
//! builds a circuit to one of the service's introduction points and sends INTRODUCE1:
//! `S` and, sealed to `N` with HPKE (RFC 9180, base mode, X25519-HKDF-SHA256,
//! ChaCha20-Poly1305, info `"nodus-onion-introduce-1"`, associated data `S`), the
//! rendezvous point's peer id and onion key, the cookie, and an ntor CREATE for the
//! service (identity `S`, key `N`). The introduction point passes the same data to the
//! service as INTRODUCE2 and answers the client INTRODUCE_ACK.
//!
//! **Rendezvous.** The service opens the seal (each seal once: replays are dropped),
//! builds its own circuit to the rendezvous point and sends RENDEZVOUS1: the cookie
//! and its ntor CREATED. The point sends the CREATED to the client as RENDEZVOUS2 and
//! from then on joins the two circuits: a cell it does not recognize from one goes on
//! along the other. The client finishes the handshake and adds the service as a hop
//! beyond the rendezvous point; the service adds the client's keys the other way
//! round. Streams then run as with an exit: BEGIN to the service's port, which it
//! connects to its local target.
//!
//! Neither side's circuit shows the other's address: the introduction point knows the
//! service's circuit and the client's circuit, the rendezvous point both circuits,
//! each only as its previous hop.

pub mod address;
pub mod connect;
pub mod descriptor;
pub mod host;
pub mod messages;
