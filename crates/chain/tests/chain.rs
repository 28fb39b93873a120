//! The chain core on real redb files: blocks mined, imported by a second node's chain,
//! transfers executed, a heavier fork reorganised onto with exact state undo, and the
//! chain reloaded from disk.

use std::sync::atomic::{AtomicBool, AtomicU64};

use alloy_consensus::{TxEip1559, TxLegacy, TypedTransaction};
use alloy_primitives::{Address, TxKind, U256};
use nodus_chain::GenesisConfig;
use nodus_chain::chain::{Chain, HISTORY_BLOCKS, Imported, StateOptions};
use nodus_chain::spec::DEV_KEYS;
use nodus_chain::state::StateRead;
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
    c.state()
        .account_or_log(a)
        .map(|r| r.balance)
        .unwrap_or_default()
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
    assert_eq!(balance_at(&a, &bob, 2), U256::from(12));
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
    // Reads at past blocks follow the new branch.
    for (n, want) in [(0, 0u64), (1, 5), (2, 5), (3, 5)] {
        assert_eq!(balance_at(&a, &bob, n), U256::from(want), "at block {n}");
    }
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

fn balance_at(c: &Chain, a: &Address, n: u64) -> U256 {
    c.state_at(n)
        .unwrap()
        .account(a)
        .unwrap()
        .map(|r| r.balance)
        .unwrap_or_default()
}

#[test]
fn state_is_read_at_the_last_128_blocks_and_at_every_block_on_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = open(&dir, "a.redb");
    let archive_path = dir.path().join("archive.redb");
    let options = StateOptions { archive: true };
    let mut archive =
        Chain::open_with(spec(), &archive_path, options, &mut std::iter::empty()).unwrap();
    let alice = Key::from_hex(DEV_KEYS[0]).unwrap();
    let bob = Address::repeat_byte(0xb0);
    let blocks = HISTORY_BLOCKS + 20;
    for i in 0..blocks {
        let now = 1_000 + i;
        let b = mine(
            &mut a,
            vec![transfer(&alice, i, bob, 1)],
            now,
            Address::ZERO,
        );
        a.import(b.clone(), now).unwrap();
        archive.import(b, now).unwrap();
    }
    let head = a.head_number();
    assert_eq!(head, blocks);
    let oldest = head - HISTORY_BLOCKS;
    for n in oldest..=head {
        assert_eq!(balance_at(&a, &bob, n), U256::from(n), "at block {n}");
    }
    let e = a.state_at(oldest - 1).err().expect("pruned").to_string();
    assert!(e.contains("archive = true"), "{e}");
    for n in 0..=head {
        assert_eq!(
            balance_at(&archive, &bob, n),
            U256::from(n),
            "archive at {n}"
        );
    }
    // Both reopen with their history and their windows.
    drop(a);
    drop(archive);
    let a = open(&dir, "a.redb");
    assert_eq!(balance_at(&a, &bob, oldest), U256::from(oldest));
    assert!(a.state_at(oldest - 1).is_err());
    let archive =
        Chain::open_with(spec(), &archive_path, options, &mut std::iter::empty()).unwrap();
    assert_eq!(balance_at(&archive, &bob, 1), U256::from(1u64));
}

#[test]
fn a_file_with_the_state_in_the_old_layout_is_moved_at_open() {
    use nodus_chain::state::AccountRec;
    use redb::{ReadableDatabase, TableDefinition};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    let mut a = open(&dir, "old.redb");
    let alice = Key::from_hex(DEV_KEYS[0]).unwrap();
    let bob = Address::repeat_byte(0xb0);
    let miner = Address::repeat_byte(0xaa);
    let b1 = mine(&mut a, vec![transfer(&alice, 0, bob, 5)], 1_000, miner);
    a.import(b1, 1_000).unwrap();
    let head = a.head_hash();
    let mut everyone: Vec<Address> = spec().alloc.iter().map(|(a, _)| *a).collect();
    everyone.extend([bob, miner]);
    let records: Vec<(Address, AccountRec)> = everyone
        .iter()
        .map(|x| (*x, a.state().account_or_log(x).unwrap()))
        .collect();
    drop(a);
    // The layout before 0.24: accounts by plain address, no trie, no history.
    {
        const OLD: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("accounts");
        let db = redb::Database::open(&path).unwrap();
        let w = db.begin_write().unwrap();
        for t in ["state_accounts", "state_storage", "state_trie"] {
            w.delete_table(redb::TableDefinition::<&[u8], &[u8]>::new(t))
                .unwrap();
        }
        {
            let mut old = w.open_table(OLD).unwrap();
            for (x, rec) in &records {
                let v = postcard::to_allocvec(rec).unwrap();
                old.insert(&x.0.0, v.as_slice()).unwrap();
            }
        }
        w.commit().unwrap();
        let r = db.begin_read().unwrap();
        assert!(r.open_table(OLD).is_ok());
    }
    let a = open(&dir, "old.redb");
    assert_eq!(a.head_hash(), head);
    assert_eq!(balance(&a, &bob), U256::from(5));
    assert_eq!(balance_at(&a, &bob, 1), U256::from(5));
    assert!(
        a.state_at(0).is_err(),
        "no history was kept before: only the head's state"
    );
    drop(a);
    let db = redb::Database::open(&path).unwrap();
    let r = db.begin_read().unwrap();
    let old: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("accounts");
    assert!(r.open_table(old).is_err(), "the old table is gone");
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
