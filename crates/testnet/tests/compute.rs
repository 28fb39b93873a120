//! Volunteer computing on real nodes over the overlay: the quorum catches a volunteer
//! that returns wrong results; a volunteer that never answers has its unit reissued
//! after the deadline; garbage on the compute protocol drops that peer only; finished
//! work a volunteer could not report survives its death and counts when it is back;
//! honest volunteers return the same bytes and fuel.

use std::time::Duration;

use futures::AsyncWriteExt;
use nodus_compute::config::ComputeConfig;
use nodus_compute::unit::{ReplicaState, Status};
use nodus_compute::wire::{self, Reply, Request};
use nodus_compute::{ComputeHandle, Inputs, Submission, examples};
use nodus_testnet::{Testnet, node_config, node_ip, wait_until};

const T: Duration = Duration::from_secs(60);

fn compute(net: &Testnet, k: usize) -> ComputeHandle {
    net.node(k).service::<ComputeHandle>().unwrap().clone()
}

fn primes(units: u64, quorum: u32, deadline_secs: u64) -> Submission {
    Submission {
        name: "primes".into(),
        module: hex::encode(examples::primes()),
        inputs: Inputs::Range { from: 0, to: units },
        args: vec!["1000".into()],
        quorum,
        deadline_secs,
        fuel: 1_000_000_000,
        memory_mb: 16,
        output_bytes: 1024,
        adaptive: false,
        canonical_nans: false,
        pay_wei_per_gfuel: None,
    }
}

/// A coordinator (node 0) and three would-be volunteers: nodes 1 and 2, and the
/// returned one, which returns wrong results. None donates yet.
async fn with_a_cheat(dir: &std::path::Path) -> (Testnet, usize) {
    let mut net = Testnet::start(3, dir).await.unwrap();
    let mut config = node_config(node_ip(3), &net.bootstrap_addrs());
    let mut faulty: ComputeConfig = config.section().unwrap();
    faulty.faulty = true;
    config.set_section(&faulty);
    let cheat = net.add_node(config).await.unwrap();
    (net, cheat)
}

/// The cheat donates first, so some of its wrong results are judged (two honest
/// volunteers could otherwise take every unit before it asks); then nodes 1 and 2, who
/// both must agree on each unit the cheat ran.
async fn cheat_first(net: &Testnet, cheat: usize) {
    let donate = |k: usize| {
        compute(net, k)
            .set_volunteer(true, Some(1), None, None)
            .unwrap()
    };
    donate(cheat);
    let ran = || async {
        compute(net, cheat)
            .volunteer_status()
            .is_ok_and(|s| s.units_run > 0)
    };
    wait_until(T, "the cheat to run a unit", ran).await.unwrap();
    donate(1);
    donate(2);
}

async fn sum_is_right(c: &ComputeHandle, id: &str, units: u64) {
    let (results, next) = c.results(id, 0, units as usize).await.unwrap();
    assert_eq!(results.len() as u64, units);
    assert!(next.is_none());
    let sum = examples::sum_counts(results.iter().map(|r| r.output.stdout.as_slice())).unwrap();
    assert_eq!(sum, examples::primes_below(units * 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quorum_catches_a_volunteer_returning_wrong_results() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let (net, cheat) = with_a_cheat(tmp.path()).await;
    let c = compute(&net, 0);
    let id = c.submit(primes(40, 2, 600)).await.unwrap();
    cheat_first(&net, cheat).await;
    let s = c.wait_finished(&id, T).await.unwrap();
    assert_eq!((s.done, s.failed), (40, 0), "{s:?}");
    let cheat_peer = net.node(cheat).peer_id().to_string();
    let by = |peer: &str| s.volunteers.iter().find(|v| v.peer == peer).cloned();
    let cheat_row = by(&cheat_peer).expect("the cheat took work");
    assert!(cheat_row.invalid > 0, "{s:?}");
    assert_eq!((cheat_row.valid, cheat_row.credit), (0, 0), "{s:?}");
    for k in [1, 2] {
        let row = by(&net.node(k).peer_id().to_string()).expect("an honest volunteer worked");
        assert_eq!(row.invalid, 0, "{s:?}");
        assert!(row.credit > 0);
    }
    sum_is_right(&c, &id, 40).await;
    // Honest replicas of one unit used the same fuel on two nodes.
    for unit in 0..40 {
        let u = c.unit(&id, unit).unwrap();
        let Status::Done { fuel, .. } = u.status else {
            panic!("unit {unit} not accepted")
        };
        let valid: Vec<u64> = u
            .replicas
            .iter()
            .filter_map(|r| match r.state {
                ReplicaState::Success { fuel: f, hash, .. }
                    if matches!(u.status, Status::Done { hash: h, .. } if h == hash) =>
                {
                    Some(f)
                }
                _ => None,
            })
            .collect();
        assert!(valid.len() >= 2);
        assert!(valid.iter().all(|f| *f == fuel), "unit {unit}: {valid:?}");
    }
    net.shutdown().await;
}

/// wei per billion fuel the paying test offers.
const RATE: u128 = 10u128.pow(14);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_results_are_paid_on_the_chain_once_and_a_cheat_is_paid_nothing() {
    use nodus_chain::primitives::{Address, U256};
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let (net, cheat) = with_a_cheat(tmp.path()).await;
    let c = compute(&net, 0);
    let id = c
        .submit(Submission {
            pay_wei_per_gfuel: Some(RATE.to_string()),
            ..primes(20, 2, 600)
        })
        .await
        .unwrap();
    cheat_first(&net, cheat).await;
    // Until its account holds ether, the project owes and says why it does not pay.
    wait_until(T, "the payroll to say its account has no funds", || async {
        c.payroll()
            .last_error
            .is_some_and(|e| e.contains("not enough for what is owed"))
    })
    .await
    .unwrap();
    let s = c.status(&id).unwrap();
    let pay = s.pay.as_ref().expect("a paying project shows its payroll");
    assert_eq!((pay.paid.as_str(), pay.sending.as_str()), ("0", "0"));
    assert!(
        pay.note.as_ref().unwrap().contains("send it ether"),
        "{pay:?}"
    );

    let chain = net
        .node(0)
        .service::<nodus_chain::ChainHandle>()
        .unwrap()
        .clone();
    let account: Address = c.payroll().account.parse().unwrap();
    let tx = nodus_chain::spec::dev_transfer(7, 0, account, U256::from(10u128.pow(18)));
    chain.submit_raw(tx).await.unwrap();
    chain.set_mining(true, None, None);
    let s = c.wait_finished(&id, T).await.unwrap();
    assert_eq!((s.done, s.failed), (20, 0), "{s:?}");
    wait_until(T, "every credit to be paid and mined", || async {
        let s = c.status(&id).unwrap();
        let p = s.pay.unwrap();
        p.owed == "0" && p.sending == "0" && p.paid != "0"
    })
    .await
    .unwrap();
    chain.stop_mining().await.unwrap();
    let s = c.status(&id).unwrap();
    let mut total = 0u128;
    for k in [1, 2, cheat] {
        let v = compute(&net, k).volunteer_status().unwrap();
        let payout = v.payout.expect("a node with a chain has a payout address");
        let row = s
            .volunteers
            .iter()
            .find(|r| r.peer == net.node(k).peer_id().to_string())
            .expect("every volunteer worked");
        assert_eq!(row.payout.as_deref(), Some(payout.as_str()));
        let earned = nodus_compute::pay::earned(row.credit, RATE);
        let paid: u128 = row.paid.as_ref().unwrap().parse().unwrap();
        assert_eq!(paid, earned, "{row:?}");
        // Exactly what was earned arrived, once: the address held nothing before.
        let balance = chain.balance(payout.parse().unwrap()).await.unwrap();
        assert_eq!(balance, U256::from(earned), "{row:?}");
        if k == cheat {
            assert_eq!(earned, 0);
        } else {
            assert!(earned > 0);
        }
        total += earned;
    }
    assert_eq!(s.pay.unwrap().paid, total.to_string());
    assert!(c.payroll().payments_mined >= 2);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volunteer_that_never_answers_has_its_unit_reissued() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, tmp.path()).await.unwrap();
    let c = compute(&net, 0);
    let id = c.submit(primes(3, 1, 2)).await.unwrap();
    let project: wire::ProjectId = hex::decode(&id).unwrap().try_into().unwrap();
    // Node 2 takes every unit and goes silent.
    let silent = &net.node(2).net;
    let mut s = silent
        .open_stream(net.node(0).peer_id(), wire::PROTOCOL)
        .await
        .unwrap();
    wire::write(
        &mut s,
        &Request::Work {
            project,
            max: 8,
            class: nodus_compute::sandbox::class(false),
            payout: None,
        },
    )
    .await
    .unwrap();
    let Reply::Units { units, .. } =
        wire::decode_reply(&wire::read_raw(&mut s).await.unwrap()).unwrap()
    else {
        panic!("no units")
    };
    assert_eq!(units.len(), 3);
    // An honest volunteer gets them once their deadline passed.
    compute(&net, 1)
        .set_volunteer(true, Some(1), None, None)
        .unwrap();
    let st = c.wait_finished(&id, T).await.unwrap();
    assert_eq!(st.done, 3, "{st:?}");
    let silent_peer = net.node(2).peer_id().to_string();
    let row = st
        .volunteers
        .iter()
        .find(|v| v.peer == silent_peer)
        .unwrap();
    assert_eq!((row.late, row.valid), (3, 0));
    sum_is_right(&c, &id, 3).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_protocol_drops_that_peer_only() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, tmp.path()).await.unwrap();
    let c = compute(&net, 0);
    let coordinator = net.node(0).peer_id();
    let mut s = net
        .node(2)
        .net
        .open_stream(coordinator, wire::PROTOCOL)
        .await
        .unwrap();
    s.write_all(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    s.flush().await.unwrap();
    // The coordinator closes that stream: the next read ends.
    assert!(wire::read_raw(&mut s).await.is_err());
    // A frame claiming 4 GiB is refused without reading it.
    let mut s = net
        .node(2)
        .net
        .open_stream(coordinator, wire::PROTOCOL)
        .await
        .unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    s.flush().await.unwrap();
    assert!(wire::read_raw(&mut s).await.is_err());
    wait_until(T, "garbage counted", || async {
        net.metric(0, "nodus_compute_bad_messages_total").await >= 2.0
    })
    .await
    .unwrap();
    // Everyone else is still served.
    compute(&net, 1)
        .set_volunteer(true, Some(1), None, None)
        .unwrap();
    let id = c.submit(primes(5, 1, 600)).await.unwrap();
    assert_eq!(c.wait_finished(&id, T).await.unwrap().done, 5);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_work_survives_a_volunteer_killed_before_it_could_report() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(2, tmp.path()).await.unwrap();
    let c = compute(&net, 0);
    // Units long enough (a tenth of a second or more) to be seen in progress.
    let mut heavy = primes(20, 1, 600);
    heavy.args = vec!["300000".into()];
    let id = c.submit(heavy).await.unwrap();
    let v = compute(&net, 1);
    v.set_volunteer(true, Some(1), None, None).unwrap();
    // The coordinator goes away while the volunteer works.
    wait_until(T, "work handed out", || async {
        c.status(&id).unwrap().in_progress > 0
    })
    .await
    .unwrap();
    net.stop(0).await.unwrap();
    wait_until(T, "finished units kept", || async {
        v.volunteer_status().unwrap().unreported > 0
    })
    .await
    .unwrap();
    // It stops donating (remembered), finishes what runs, and is killed.
    v.set_volunteer(false, None, None, None).unwrap();
    wait_until(T, "running units to end", || async {
        v.volunteer_status().unwrap().running.is_empty()
    })
    .await
    .unwrap();
    let status = v.volunteer_status().unwrap();
    let kept = status.unreported_units;
    assert_eq!(kept.len() as u64, status.unreported);
    // Handles held here keep a node's files open: let them go before restarts.
    drop((c, v));
    net.kill(1).await.unwrap();
    net.restart(0).await.unwrap();
    let c = compute(&net, 0);
    let before = c.status(&id).unwrap().done as u64;
    let is_done = |c: &nodus_compute::ComputeHandle, u: u32| {
        matches!(
            c.unit(&id, u).unwrap().status,
            nodus_compute::unit::Status::Done { .. }
        )
    };
    // A unit reported just before the coordinator stopped may have been taken with its
    // acknowledgement lost: kept, and done already.
    let counted = kept.iter().filter(|k| is_done(&c, k.unit)).count() as u64;
    // Back, not donating, it still reports what it had finished: each is accepted.
    net.restart(1).await.unwrap();
    let v = compute(&net, 1);
    assert!(
        !v.volunteer_status().unwrap().on,
        "not donating is remembered"
    );
    wait_until(T, "finished units reported", || async {
        v.volunteer_status().unwrap().unreported == 0
    })
    .await
    .unwrap();
    let done = c.status(&id).unwrap().done as u64;
    assert_eq!(
        done,
        before + kept.len() as u64 - counted,
        "{kept:?} finished units were reported, {counted} of them taken before"
    );
    assert!(kept.iter().all(|k| is_done(&c, k.unit)), "each is done");
    assert_eq!(v.volunteer_status().unwrap().units_run, 0);
    net.shutdown().await;
}
