//! The circuit handshake: Tor's ntor (tor-spec §5.1.4) with this protocol's own strings,
//! HMAC-SHA256 and HKDF-SHA256 (RFC 5869) from RustCrypto, X25519 from x25519-dalek.
//!
//! A relay holds a static onion key `b` (public `B`, published in its signed descriptor)
//! and an identity `ID` (SHA-256 of its peer id's bytes). The client knows `ID` and `B`
//! before it starts, so a completed handshake proves it shares keys with the holder of
//! `b`, whichever hops carried the cells.
//!
//! ```text
//! client:  x, X = x·G                      CREATE  = ID | B | X        (96 bytes)
//! relay:   y, Y = y·G
//!          secret_input = X·y | X·b | ID | B | X | Y | PROTOID
//!          verify       = H(secret_input, T_VERIFY)
//!          auth_input   = verify | ID | B | Y | X | PROTOID | "Server"
//!          AUTH         = H(auth_input, T_MAC)     CREATED = Y | AUTH    (64 bytes)
//! client:  secret_input = Y·x | B·x | ID | B | X | Y | PROTOID; checks AUTH
//! both:    keys = HKDF-SHA256(salt = T_KEY, ikm = secret_input, info = M_EXPAND, 128)
//!               = Df | Db | Kf | Kb  (32 bytes each; see `layers`)
//! ```
//!
//! `H(m, k)` is HMAC-SHA256 keyed with `k`. Either side refuses a Diffie-Hellman result
//! that is all zeros (a small-order point). The test vector below was computed
//! independently with Python's `cryptography` and `hmac`.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::OnionError;

pub const PROTOID: &[u8] = b"nodus-onion-ntor-1";
const T_MAC: &[u8] = b"nodus-onion-ntor-1:mac";
const T_KEY: &[u8] = b"nodus-onion-ntor-1:key_extract";
const T_VERIFY: &[u8] = b"nodus-onion-ntor-1:verify";
const M_EXPAND: &[u8] = b"nodus-onion-ntor-1:key_expand";

pub const CREATE_LEN: usize = 96;
pub const CREATED_LEN: usize = 64;
/// Bytes of key material a handshake yields: `Df | Db | Kf | Kb`.
pub const KEYS_LEN: usize = 128;

pub type Keys = Zeroizing<[u8; KEYS_LEN]>;

/// A relay's identity in handshakes: SHA-256 of its peer id's bytes.
pub type RelayId = [u8; 32];

/// A relay's onion key pair.
#[derive(Clone)]
pub struct OnionKey {
    secret: StaticSecret,
    public: PublicKey,
}

impl OnionKey {
    pub fn from_bytes(secret: [u8; 32]) -> OnionKey {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret);
        OnionKey { secret, public }
    }

    pub fn generate() -> OnionKey {
        OnionKey::from_bytes(random32())
    }

    pub fn public(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }
}

/// What a handshake's keys bind a message to (ESTABLISH_INTRO signs it): both ends of
/// that hop can compute it, nobody else can.
pub fn binding(keys: &Keys) -> [u8; 32] {
    use sha2::Digest;
    Sha256::new_with_prefix(b"nodus-onion-binding-1")
        .chain_update(&keys[..])
        .finalize()
        .into()
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    b
}

/// The client's half of a handshake in progress.
pub struct ClientHandshake {
    id: RelayId,
    b: [u8; 32],
    x: StaticSecret,
    big_x: [u8; 32],
}

impl ClientHandshake {
    /// Starts a handshake with the relay `id` whose onion key is `b`: returns the state
    /// to keep and the CREATE body to send.
    pub fn start(id: RelayId, b: [u8; 32]) -> (ClientHandshake, [u8; CREATE_LEN]) {
        ClientHandshake::start_with(id, b, random32())
    }

    /// [`ClientHandshake::start`] with a given ephemeral secret (test vectors).
    pub fn start_with(
        id: RelayId,
        b: [u8; 32],
        x: [u8; 32],
    ) -> (ClientHandshake, [u8; CREATE_LEN]) {
        let x = StaticSecret::from(x);
        let big_x = PublicKey::from(&x).to_bytes();
        let mut create = [0u8; CREATE_LEN];
        create[..32].copy_from_slice(&id);
        create[32..64].copy_from_slice(&b);
        create[64..].copy_from_slice(&big_x);
        (ClientHandshake { id, b, x, big_x }, create)
    }

    /// Checks the relay's CREATED body; returns the circuit keys for this hop.
    pub fn finish(self, created: &[u8]) -> Result<Keys, OnionError> {
        if created.len() < CREATED_LEN {
            return Err(OnionError::Handshake("CREATED body too short"));
        }
        let y: [u8; 32] = created[..32].try_into().expect("32 bytes");
        let auth: [u8; 32] = created[32..64].try_into().expect("32 bytes");
        let xy = self.x.diffie_hellman(&PublicKey::from(y));
        let xb = self.x.diffie_hellman(&PublicKey::from(self.b));
        if !xy.was_contributory() || !xb.was_contributory() {
            return Err(OnionError::Handshake("a Diffie-Hellman result is zero"));
        }
        let secret = secret_input(
            xy.as_bytes(),
            xb.as_bytes(),
            &self.id,
            &self.b,
            &self.big_x,
            &y,
        );
        let expected = auth_of(&secret, &self.id, &self.b, &self.big_x, &y);
        if !bool::from(expected.ct_eq(&auth)) {
            return Err(OnionError::Handshake(
                "AUTH does not match: not the relay's onion key",
            ));
        }
        Ok(expand(&secret))
    }
}

/// The relay's side: answers a CREATE body addressed to `(id, key)`, or to a previous
/// onion key still accepted (`old`). Returns the CREATED body and the keys.
pub fn respond(
    id: &RelayId,
    keys: &[&OnionKey],
    create: &[u8],
) -> Result<([u8; CREATED_LEN], Keys), OnionError> {
    respond_with(id, keys, create, random32())
}

/// [`respond`] with a given ephemeral secret (test vectors).
pub fn respond_with(
    id: &RelayId,
    keys: &[&OnionKey],
    create: &[u8],
    y: [u8; 32],
) -> Result<([u8; CREATED_LEN], Keys), OnionError> {
    if create.len() < CREATE_LEN {
        return Err(OnionError::Handshake("CREATE body too short"));
    }
    if create[..32] != id[..] {
        return Err(OnionError::Handshake("CREATE is for another relay"));
    }
    let b: [u8; 32] = create[32..64].try_into().expect("32 bytes");
    let big_x: [u8; 32] = create[64..96].try_into().expect("32 bytes");
    let key = keys
        .iter()
        .find(|k| k.public() == b)
        .ok_or(OnionError::Handshake(
            "CREATE names an onion key this relay does not hold",
        ))?;
    let y = StaticSecret::from(y);
    let big_y = PublicKey::from(&y).to_bytes();
    let xy = y.diffie_hellman(&PublicKey::from(big_x));
    let xb = key.secret.diffie_hellman(&PublicKey::from(big_x));
    if !xy.was_contributory() || !xb.was_contributory() {
        return Err(OnionError::Handshake("a Diffie-Hellman result is zero"));
    }
    let secret = secret_input(xy.as_bytes(), xb.as_bytes(), id, &b, &big_x, &big_y);
    let auth = auth_of(&secret, id, &b, &big_x, &big_y);
    let mut created = [0u8; CREATED_LEN];
    created[..32].copy_from_slice(&big_y);
    created[32..].copy_from_slice(&auth);
    Ok((created, expand(&secret)))
}

fn secret_input(
    xy: &[u8; 32],
    xb: &[u8; 32],
    id: &[u8; 32],
    b: &[u8; 32],
    x: &[u8; 32],
    y: &[u8; 32],
) -> Zeroizing<Vec<u8>> {
    let mut s = Zeroizing::new(Vec::with_capacity(6 * 32 + PROTOID.len()));
    for part in [xy, xb, id, b, x, y] {
        s.extend_from_slice(part);
    }
    s.extend_from_slice(PROTOID);
    s
}

fn h(message: &[&[u8]], key: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    for m in message {
        mac.update(m);
    }
    mac.finalize().into_bytes().into()
}

fn auth_of(secret: &[u8], id: &[u8; 32], b: &[u8; 32], x: &[u8; 32], y: &[u8; 32]) -> [u8; 32] {
    let verify = h(&[secret], T_VERIFY);
    h(&[&verify, id, b, y, x, PROTOID, b"Server"], T_MAC)
}

fn expand(secret: &[u8]) -> Keys {
    let mut out = Zeroizing::new([0u8; KEYS_LEN]);
    Hkdf::<Sha256>::new(Some(T_KEY), secret)
        .expand(M_EXPAND, &mut out[..])
        .expect("128 bytes is within HKDF-SHA256's limit");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_a_wrong_onion_key_is_refused() {
        let relay = OnionKey::generate();
        let id = [7u8; 32];
        let (client, create) = ClientHandshake::start(id, relay.public());
        let (created, relay_keys) = respond(&id, &[&relay], &create).unwrap();
        let client_keys = client.finish(&created).unwrap();
        assert_eq!(client_keys[..], relay_keys[..]);

        // A relay that does not hold the key the client named cannot answer.
        let other = OnionKey::generate();
        assert!(respond(&id, &[&other], &create).is_err());
        // Nor can an answer made with another key pass the client's check.
        let (client, create) = ClientHandshake::start(id, relay.public());
        let mut forged = create;
        forged[32..64].copy_from_slice(&other.public());
        let (created, _) = respond(&id, &[&other], &forged).unwrap();
        assert!(client.finish(&created).is_err());
        // A CREATE for another relay is refused.
        let (_, create) = ClientHandshake::start([8u8; 32], relay.public());
        assert!(respond(&id, &[&relay], &create).is_err());
    }

    #[test]
    fn a_flipped_bit_in_created_fails() {
        let relay = OnionKey::generate();
        let id = [1u8; 32];
        for bit in [0usize, 255, 256, 511] {
            let (client, create) = ClientHandshake::start(id, relay.public());
            let (mut created, _) = respond(&id, &[&relay], &create).unwrap();
            created[bit / 8] ^= 1 << (bit % 8);
            assert!(client.finish(&created).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn small_order_points_are_refused() {
        let relay = OnionKey::generate();
        let id = [1u8; 32];
        let mut create = [0u8; CREATE_LEN];
        create[..32].copy_from_slice(&id);
        create[32..64].copy_from_slice(&relay.public());
        // X = 0: every Diffie-Hellman result with it is zero.
        assert!(respond(&id, &[&relay], &create).is_err());
        let (client, _) = ClientHandshake::start(id, relay.public());
        assert!(client.finish(&[0u8; CREATED_LEN]).is_err());
    }

    /// Computed with Python 3 (`cryptography`'s X25519, `hmac`, and HKDF written out from
    /// RFC 5869 with `hmac`), independently of this code.
    #[test]
    fn test_vector() {
        let b = OnionKey::from_bytes([0x11; 32]);
        let id = [0x22; 32];
        let (client, create) = ClientHandshake::start_with(id, b.public(), [0x33; 32]);
        let (created, relay_keys) = respond_with(&id, &[&b], &create, [0x44; 32]).unwrap();
        let keys = client.finish(&created).unwrap();
        assert_eq!(keys[..], relay_keys[..]);
        assert_eq!(hex::encode(create), VECTOR_CREATE);
        assert_eq!(hex::encode(created), VECTOR_CREATED);
        assert_eq!(hex::encode(&keys[..]), VECTOR_KEYS);
    }

    const VECTOR_CREATE: &str = "2222222222222222222222222222222222222222222222222222222222222222\
        7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13\
        7b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a1b14";
    const VECTOR_CREATED: &str = "ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c1fff3e6b\
        89a9a390441a700ab5506ca9cc95b07c633a9065dd81e166087c6e122c5f7aa2";
    const VECTOR_KEYS: &str = "326e8cc75f4d70b3904df46c1943d099b9630c8f032ef5d3bf58ee36768776a1\
        d8562c449c1bf9915c132f7e10378a20c65d6258f561650b97f213d34c415581\
        28c3a926864961890c4e5af0a3baf080c698ba0f43ac190896eaed3e3689d9b6\
        001e9e888a0a673ada392d85bd871fa9c734cf25eb5bfac9bff51288843aafa0";
}
