//! Paying credit on the chain. Compute declares what it needs of a chain ([`Payer`]); the
//! node implements it over the chain service (crates/node/src/wiring.rs) and offers it
//! as [`SharedPayer`]. One account per node, derived from its identity, both receives
//! (a volunteer's payout address, sent with each Work request) and pays (a coordinator's
//! projects that pay for results).
//!
//! A project that pays owes each volunteer `credit * rate / 10^9` wei: its credit is
//! written in the same transaction as the verdict that earned it, so what is owed is
//! durable the moment a result is acknowledged. Payments are signed, written to
//! `compute.redb`, and only then sent ([`crate::payroll`]): after `kill -9` the same
//! signed bytes are sent again, and a nonce is mined once, so nothing is paid twice.

use std::sync::Arc;

use futures::future::BoxFuture;

/// An account on the chain.
pub type Address = [u8; 20];

/// A signed transfer, not yet sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub hash: [u8; 32],
    pub nonce: u64,
    /// What it may take from the account: value plus gas at the fee cap.
    pub cost: u128,
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayError {
    #[error(
        "the paying account {account} has {balance} wei, not enough for what is owed; send it ether (`nodus send {account} 1`)"
    )]
    NoFunds { account: String, balance: u128 },
    /// The transaction is in the pool already: sending it again did nothing.
    #[error("already known")]
    Known,
    /// Its nonce was taken by another transaction of the account.
    #[error("the nonce is used")]
    NonceUsed,
    #[error("chain: {0}")]
    Chain(String),
}

/// What compute needs of a chain.
pub trait Payer: Send + Sync {
    /// This node's account: where volunteers are paid and what coordinators pay from.
    fn address(&self) -> Address;
    /// Signs `transfers` (to, wei) from [`Payer::address`] with consecutive nonces from
    /// the account's next one (above `after`, the highest nonce of payments sent and not
    /// yet mined), as many as the balance covers beyond `reserved` (the cost of those
    /// payments); sends nothing. [`PayError::NoFunds`] when not even the first fits.
    fn sign(
        &self,
        transfers: Vec<(Address, u128)>,
        after: Option<u64>,
        reserved: u128,
    ) -> BoxFuture<'_, Result<Vec<Signed>, PayError>>;
    /// Sends a signed transfer; [`PayError::Known`] if the chain has it already.
    fn send(&self, raw: Vec<u8>) -> BoxFuture<'_, Result<(), PayError>>;
    /// The block that holds transaction `tx`, if one of the chain does.
    fn mined(&self, tx: [u8; 32]) -> BoxFuture<'_, Result<Option<u64>, PayError>>;
    /// An account's balance, wei.
    fn balance(&self, who: Address) -> BoxFuture<'_, Result<u128, PayError>>;
}

pub type SharedPayer = Arc<dyn Payer>;

/// Fuel per unit of a project's pay rate: rates are wei per billion fuel.
pub const GFUEL: u128 = 1_000_000_000;

/// What `credit` fuel earns at `rate` wei per billion fuel.
pub fn earned(credit: u64, rate: u128) -> u128 {
    (credit as u128).saturating_mul(rate) / GFUEL
}

/// An address as people write it: 0x and 40 lower-case hex digits.
pub fn show(a: &Address) -> String {
    format!("0x{}", hex::encode(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earnings_are_exact_and_saturate() {
        assert_eq!(earned(3_000_000_000, 7), 21);
        assert_eq!(earned(1, GFUEL), 1);
        assert_eq!(earned(999_999_999, 1), 0);
        assert_eq!(earned(u64::MAX, u128::MAX), u128::MAX / GFUEL);
    }
}
