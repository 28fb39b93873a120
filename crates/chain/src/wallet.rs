//! Secp256k1 keys: addresses and transaction signing. Keys held by the CLI's wallet are
//! kept in Ethereum keystore v3 files (see `keystore`).

use alloy_consensus::{SignableTransaction, TxEnvelope, TypedTransaction};
use alloy_primitives::{Address, B256, Signature, U256, keccak256};
use secp256k1::{Message, PublicKey, SECP256K1, SecretKey};

use crate::error::ChainError;

/// A private key and its address.
#[derive(Clone)]
pub struct Key {
    secret: SecretKey,
    pub address: Address,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.address)
    }
}

impl Key {
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Key, ChainError> {
        let secret = SecretKey::from_byte_array(bytes)
            .map_err(|_| ChainError::Wallet("not a valid secp256k1 private key".into()))?;
        let public = PublicKey::from_secret_key(SECP256K1, &secret);
        let uncompressed = public.serialize_uncompressed();
        let address = Address::from_slice(&keccak256(&uncompressed[1..])[12..]);
        Ok(Key { secret, address })
    }

    pub fn from_hex(hex_key: &str) -> Result<Key, ChainError> {
        let raw = hex::decode(hex_key.trim().trim_start_matches("0x"))
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or_else(|| ChainError::Wallet("a private key is 32 bytes of hex".into()))?;
        Key::from_bytes(raw)
    }

    pub fn random() -> Key {
        loop {
            if let Ok(k) = Key::from_bytes(rand::random()) {
                return k;
            }
        }
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.secret_bytes()
    }

    pub fn sign_hash(&self, hash: B256) -> Signature {
        let sig = SECP256K1.sign_ecdsa_recoverable(Message::from_digest(hash.0), &self.secret);
        let (id, rs) = sig.serialize_compact();
        let parity = i32::from(id) == 1;
        Signature::new(
            U256::from_be_slice(&rs[..32]),
            U256::from_be_slice(&rs[32..]),
            parity,
        )
    }

    /// Signs a transaction into its EIP-2718 bytes, as eth_sendRawTransaction takes them.
    pub fn sign_raw(&self, tx: TypedTransaction) -> Vec<u8> {
        alloy_eips::eip2718::Encodable2718::encoded_2718(&self.sign(tx))
    }

    /// Signs a transaction into the envelope that goes on the wire.
    pub fn sign(&self, tx: TypedTransaction) -> TxEnvelope {
        match tx {
            TypedTransaction::Legacy(t) => {
                let sig = self.sign_hash(t.signature_hash());
                t.into_signed(sig).into()
            }
            TypedTransaction::Eip2930(t) => {
                let sig = self.sign_hash(t.signature_hash());
                t.into_signed(sig).into()
            }
            TypedTransaction::Eip1559(t) => {
                let sig = self.sign_hash(t.signature_hash());
                t.into_signed(sig).into()
            }
            TypedTransaction::Eip4844(t) => {
                let sig = self.sign_hash(t.signature_hash());
                t.into_signed(sig).into()
            }
            TypedTransaction::Eip7702(t) => {
                let sig = self.sign_hash(t.signature_hash());
                t.into_signed(sig).into()
            }
        }
    }
}

/// An EIP-1559 transaction (a transfer when `data` is empty, a deployment when `to` is
/// None), for signing with [`Key::sign`].
#[allow(clippy::too_many_arguments)]
pub fn eip1559(
    chain_id: u64,
    nonce: u64,
    to: Option<Address>,
    value: U256,
    data: alloy_primitives::Bytes,
    gas_limit: u64,
    max_fee_per_gas: u128,
    max_priority_fee_per_gas: u128,
) -> TypedTransaction {
    TypedTransaction::Eip1559(alloy_consensus::TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas,
        max_priority_fee_per_gas,
        to: match to {
            Some(a) => alloy_primitives::TxKind::Call(a),
            None => alloy_primitives::TxKind::Create,
        },
        value,
        access_list: Default::default(),
        input: data,
    })
}

/// A legacy (type 0) transfer, replay-protected by EIP-155.
pub fn legacy(
    chain_id: u64,
    nonce: u64,
    to: Address,
    value: U256,
    gas_limit: u64,
    gas_price: u128,
) -> TypedTransaction {
    TypedTransaction::Legacy(alloy_consensus::TxLegacy {
        chain_id: Some(chain_id),
        nonce,
        gas_price,
        gas_limit,
        to: alloy_primitives::TxKind::Call(to),
        value,
        input: Default::default(),
    })
}

pub fn address_of_hex(hex_key: &str) -> Result<Address, ChainError> {
    Ok(Key::from_hex(hex_key)?.address)
}
