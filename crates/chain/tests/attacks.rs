//! Attacks on consensus, on real redb files: a double spend across a fork, and a longer
//! chain with less total work. (A transaction replayed from another chain id and a block
//! from the far future are refused in tests/chain.rs; a peer flooding invalid blocks is
//! banned in the testnet's tests/chain.rs.)

use std::sync::atomic::{AtomicBool, AtomicU64};

use alloy_primitives::{Address, U256};
use nodus_chain::GenesisConfig;
use nodus_chain::chain::{Chain, Imported};
use nodus_chain::mempool::{AccountView, Mempool};
use nodus_chain::spec::DEV_KEYS;
use nodus_chain::store::ChainBlock;
use nodus_chain::tx::RecoveredTx;
use nodus_chain::wallet::{Key, eip1559};
use nodus_chain::{ChainSpec, TxError, miner};

fn open(dir: &tempfile::TempDir, name: &str) -> Chain {
    let spec = ChainSpec::from_config(&GenesisConfig {
        initial_difficulty: 2000,
        block_time_secs: 1,
        ..Default::default()
    })
    .unwrap();
    Chain::open(spec, &dir.path().join(name)).unwrap()
}

/// Mines a block on `chain`'s head and makes it the head.
fn mine(chain: &mut Chain, txs: Vec<RecoveredTx>, now: u64) -> ChainBlock {
    let t = chain
        .template(Address::repeat_byte(0xee), txs, now)
        .unwrap();
    let b = miner::seal(t, 1, 0, &AtomicBool::new(false), &AtomicU64::new(0)).unwrap();
    assert!(matches!(
        chain.import(b.clone(), now).unwrap(),
        Imported::Head(_)
    ));
    b
}

fn pay(key: &Key, nonce: u64, to: Address, ether: u64) -> RecoveredTx {
    let wei = U256::from(ether) * U256::from(10u64).pow(U256::from(18));
    let tx = eip1559(
        31337,
        nonce,
        Some(to),
        wei,
        Default::default(),
        21_000,
        10_000_000_000,
        1_000_000_000,
    );
    RecoveredTx::recover(key.sign(tx)).unwrap()
}

fn balance(c: &Chain, a: &Address) -> U256 {
    c.state()
        .account_or_log(a)
        .map(|r| r.balance)
        .unwrap_or_default()
}

#[test]
fn a_double_spend_across_a_fork_leaves_exactly_one_payment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut x, mut y, mut victim) = (open(&dir, "x"), open(&dir, "y"), open(&dir, "v"));
    let mallory = Key::from_hex(DEV_KEYS[5]).unwrap();
    let (merchant, accomplice) = (Address::repeat_byte(0x11), Address::repeat_byte(0x22));
    let now = 10_000;
    // The merchant sees itself paid in block 1...
    let paid = pay(&mallory, 0, merchant, 9000);
    let b1 = mine(&mut x, vec![paid.clone()], now);
    victim.import(b1, now).unwrap();
    assert!(balance(&victim, &merchant) > U256::ZERO);
    // ...while Mallory mines a heavier branch spending the same nonce on herself.
    let fork1 = mine(&mut y, vec![pay(&mallory, 0, accomplice, 9000)], now);
    let fork2 = mine(&mut y, vec![], now + 1);
    assert_eq!(victim.import(fork1, now + 1).unwrap(), Imported::Side);
    let Imported::Head(change) = victim.import(fork2, now + 1).unwrap() else {
        panic!("the heavier branch must win")
    };
    assert_eq!(change.removed.len(), 1);
    assert_eq!(
        balance(&victim, &merchant),
        U256::ZERO,
        "the merchant's payment is undone"
    );
    assert!(balance(&victim, &accomplice) > U256::ZERO);
    // The merchant's transaction comes back, but its nonce is spent: it can never be
    // mined again, so only one of the two payments ever stands.
    assert_eq!(change.returned, vec![paid.encoded()]);
    let mut pool = Mempool::new(10, 10);
    let back = RecoveredTx::decode(&change.returned[0]).unwrap();
    let acct = victim.state().account_or_log(&mallory.address).unwrap();
    let view = AccountView {
        nonce: acct.nonce,
        balance: acct.balance,
    };
    assert!(matches!(
        pool.add(back, &view),
        Err(TxError::NonceTooLow { .. })
    ));
}

#[test]
fn a_longer_chain_with_less_work_does_not_win() {
    let dir = tempfile::tempdir().unwrap();
    let (mut long, mut heavy, mut victim) = (open(&dir, "l"), open(&dir, "h"), open(&dir, "v"));
    let t0 = 50_000;
    // Five blocks, but after a 20-minute gap ASERT makes the later ones ~1000x easier.
    let mut long_blocks = vec![
        mine(&mut long, vec![], t0),
        mine(&mut long, vec![], t0 + 1200),
    ];
    for i in 1..=3 {
        long_blocks.push(mine(&mut long, vec![], t0 + 1200 + i));
    }
    // Three blocks on schedule.
    let heavy_blocks: Vec<_> = (0..3).map(|i| mine(&mut heavy, vec![], t0 + i)).collect();
    assert!(long.head_number() > heavy.head_number());
    assert!(
        heavy.total_work() > long.total_work(),
        "fewer blocks, more work"
    );

    let now = t0 + 1300;
    for b in long_blocks {
        victim.import(b, now).unwrap();
    }
    assert_eq!(victim.head_number(), 5);
    for b in heavy_blocks {
        victim.import(b, now).unwrap();
    }
    assert_eq!(
        victim.head_hash(),
        heavy.head_hash(),
        "most work wins, not most blocks"
    );
    assert_eq!(victim.head_number(), 3);
}
