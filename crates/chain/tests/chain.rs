//! The chain core on real redb files: blocks mined, imported by a second node's chain,
//! transfers executed, a heavier fork reorganised onto with exact state undo, and the
//! chain reloaded from disk.

use std::sync::atomic::{AtomicBool, AtomicU64};

use alloy_consensus::{TxEip1559, TxLegacy, TypedTransaction};
use alloy_primitives::{Address, TxKind, U256};
use nodus_chain::GenesisConfig;
use nodus_chain::chain::{Chain, Imported};
use nodus_chain::spec::DEV_KEYS;
use nodus_chain::store::ChainBlock;
use nodus_chain::tx::RecoveredTx;
use nodus_chain::wallet::Key;
use nodus_chain::{ChainError, ChainSpec, miner};

fn spec() -> ChainSpec {
    ChainSpec::from_config(&GenesisConfig {
        initial_difficulty: 2000,
        ..Default::default()
    })
    .unwrap()
}

fn open(dir: &tempfile::TempDir, name: &str) -> Chain {
    Chain::open(spec(), &dir.path().join(name)).unwrap()
}

fn mine(chain: &mut Chain, txs: Vec<RecoveredTx>, now: u64, coinbase: Address) -> ChainBlock {
    let t = chain.template(coinbase, txs, now).unwrap();
    let stop = AtomicBool::new(false);
    miner::seal(t, 1, 0, &stop, &AtomicU64::new(0)).unwrap()
}

fn transfer(key: &Key, nonce: u64, to: Address, wei: u64) -> RecoveredTx {
    let tx = TxEip1559 {
        chain_id: 31337,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 3_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(to),
        value: U256::from(wei),
        ..Default::default()
    };
    RecoveredTx::recover(key.sign(TypedTransaction::Eip1559(tx))).unwrap()
}

fn balance(c: &Chain, a: &Address) -> U256 {
    c.state().account(a).map(|r| r.balance).unwrap_or_default()
}

#[test]
fn blocks_import_execute_and_reorg_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = open(&dir, "a.redb");
    let mut b = open(&dir, "b.redb");
    assert_eq!(a.genesis_hash(), b.genesis_hash());
    let alice = Key::from_hex(DEV_KEYS[0]).unwrap();
    let bob = Address::repeat_byte(0xb0);
    let miner_a = Address::repeat_byte(0xaa);
    let miner_b = Address::repeat_byte(0xbb);
    let now = 1_000;

    // A mines a transfer; B imports it and reaches the same state root.
    let b1 = mine(&mut a, vec![transfer(&alice, 0, bob, 5)], now, miner_a);
    assert!(matches!(
        a.import(b1.clone(), now).unwrap(),
        Imported::Head(_)
    ));
    assert!(matches!(
        b.import(b1.clone(), now).unwrap(),
        Imported::Head(_)
    ));
    assert_eq!(balance(&b, &bob), U256::from(5));
    assert_eq!(a.head().state_root, b.head().state_root);
    let root_after_1 = a.head().state_root;

    // A extends with a second transfer; B mines a competing branch of two blocks with
    // no transfer, which has more work, and A reorganises onto it.
    let a2 = mine(&mut a, vec![transfer(&alice, 1, bob, 7)], now + 1, miner_a);
    assert!(matches!(
        a.import(a2.clone(), now + 1).unwrap(),
        Imported::Head(_)
    ));
    assert_eq!(balance(&a, &bob), U256::from(12));
    let b2 = mine(&mut b, vec![], now + 1, miner_b);
    b.import(b2.clone(), now + 1).unwrap();
    let b3 = mine(&mut b, vec![], now + 2, miner_b);
    b.import(b3.clone(), now + 2).unwrap();
    let work_a = a.total_work();
    assert_eq!(
        a.import(b2.clone(), now + 2).unwrap(),
        Imported::Side,
        "equal work keeps the head"
    );
    match a.import(b3.clone(), now + 2).unwrap() {
        Imported::Head(change) => {
            assert!(a.total_work() > work_a);
            assert_eq!(change.removed, vec![a2.header.hash_slow()]);
            assert_eq!(
                change.added,
                vec![b2.header.hash_slow(), b3.header.hash_slow()]
            );
            assert_eq!(
                change.returned.len(),
                1,
                "the orphaned transfer goes back to the pool"
            );
        }
        other => panic!("expected a reorg, got {other:?}"),
    }
    assert_eq!(
        balance(&a, &bob),
        U256::from(5),
        "the orphaned transfer is undone"
    );
    assert_eq!(a.head().state_root, b.head().state_root);
    assert_eq!(
        balance(&a, &miner_a),
        U256::from(2_000_000_000_000_000_000u128) + U256::from(21_000u64 * 1_000_000_000)
    );
    assert_eq!(
        a.header(&a.canonical_hash(1).unwrap()).unwrap().state_root,
        root_after_1
    );

    // Reopened from disk, A has the same head and state.
    let head = a.head_hash();
    drop(a);
    let a = open(&dir, "a.redb");
    assert_eq!(a.head_hash(), head);
    assert_eq!(balance(&a, &bob), U256::from(5));
    assert!(
        a.tx_location(&b1.body.transactions[0].tx_hash().clone())
            .unwrap()
            .is_some()
    );
    assert!(
        a.tx_location(a2.body.transactions[0].tx_hash())
            .unwrap()
            .is_none(),
        "orphaned tx unindexed"
    );
}

#[test]
fn bad_blocks_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = open(&dir, "a.redb");
    let now = 1_000;
    let good = mine(&mut a, vec![], now, Address::ZERO);

    let mut bad_pow = good.clone();
    bad_pow.header.nonce = alloy_primitives::B64::from(
        u64::from_be_bytes(good.header.nonce.0)
            .wrapping_add(1)
            .to_be_bytes(),
    );
    let e = a.import(bad_pow, now).unwrap_err().to_string();
    assert!(e.contains("proof of work"), "{e}");

    let mut bad_root = a.template(Address::ZERO, vec![], now).unwrap();
    bad_root.header.state_root = alloy_primitives::B256::repeat_byte(1);
    let sealed = miner::seal(bad_root, 1, 0, &AtomicBool::new(false), &AtomicU64::new(0)).unwrap();
    let e = a.import(sealed, now).unwrap_err().to_string();
    assert!(e.contains("state root"), "{e}");
    assert_eq!(a.head_number(), 0, "the head did not move");

    let future = mine(&mut a, vec![], now + 100, Address::ZERO);
    let e = a.import(future, now).unwrap_err().to_string();
    assert!(e.contains("future"), "{e}");

    // A transaction for another chain id inside a block fails the block.
    let key = Key::from_hex(DEV_KEYS[1]).unwrap();
    let other_chain = TxLegacy {
        chain_id: Some(1),
        nonce: 0,
        gas_price: 2_000_000_000,
        gas_limit: 21_000,
        to: TxKind::Call(Address::ZERO),
        value: U256::from(1),
        input: Default::default(),
    };
    let replayed = RecoveredTx::recover(key.sign(TypedTransaction::Legacy(other_chain))).unwrap();
    let mut t = a.template(Address::ZERO, vec![], now).unwrap();
    t.body.transactions.push((*replayed.tx).clone());
    t.header.transactions_root =
        alloy_consensus::proofs::calculate_transaction_root(&t.body.transactions);
    let sealed = miner::seal(t, 1, 0, &AtomicBool::new(false), &AtomicU64::new(0)).unwrap();
    let e = a.import(sealed, now).unwrap_err();
    assert!(matches!(e, ChainError::Block { .. }), "{e}");
    assert!(e.to_string().contains("chain id"), "{e}");
    assert!(a.import(good, now).is_ok());
}
