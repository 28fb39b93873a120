//! `nodus compute` as a person uses it, on node processes: a project submitted from a C
//! program built for wasm32-wasi, a volunteer donating a core, the coordinator killed
//! with `kill -9` halfway and started again, the project finished and its results
//! written and checked; a person's mistakes get errors that say what to do.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
}

fn status(d: &Path, id: &str) -> Value {
    json(&nodus(d, &["--json", "compute", "status", id]))
}

/// Two nodes under `dir` on 127.0.`net`.1 (a coordinator, `a`) and .2 (a volunteer,
/// `b`), running and connected.
fn coordinator_and_volunteer(dir: &Path, net: u8) -> (PathBuf, PathBuf, Running, Running) {
    let (a, b) = (dir.join("a"), dir.join("b"));
    init_at(&a, &format!("127.0.{net}.1"));
    init_at(&b, &format!("127.0.{net}.2"));
    let (coordinator, volunteer) = (up(&a), up(&b));
    connect(&b, &a);
    (a, b, coordinator, volunteer)
}

#[test]
fn a_project_survives_its_coordinator_killed_and_its_results_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, mut coordinator, _volunteer) = coordinator_and_volunteer(dir.path(), 80);

    let wasm = dir.path().join("primes.wasm");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/compute/primes.c");
    let clang = std::process::Command::new("clang")
        .args(["--target=wasm32-wasi", "-O2"])
        .arg(&src)
        .arg("-o")
        .arg(&wasm)
        .status()
        .expect("clang (scripts/test installs it)");
    assert!(clang.success());

    // A person's mistakes.
    fails_saying(
        &nodus(
            &a,
            &["compute", "submit", "missing.wasm", "--inputs", "0..3"],
        ),
        "cannot read the module",
    );
    fails_saying(
        &nodus(
            &a,
            &[
                "compute",
                "submit",
                wasm.to_str().unwrap(),
                "--inputs",
                "9..3",
            ],
        ),
        "A..B",
    );
    fails_saying(
        &nodus(
            &a,
            &[
                "compute",
                "submit",
                src.to_str().unwrap(),
                "--inputs",
                "0..3",
            ],
        ),
        "not a valid wasm module",
    );
    fails_saying(&nodus(&a, &["compute", "status", "beef"]), "no project");

    let o = nodus(
        &a,
        &[
            "compute",
            "submit",
            wasm.to_str().unwrap(),
            "--inputs",
            "0..60",
            "--arg",
            "20000",
            "--quorum",
            "1",
            "--deadline",
            "5s",
            "--name",
            "primes",
        ],
    );
    ok(&o);
    let id = stdout(&o).trim().to_string();
    assert_eq!(id.len(), 32, "{id}");
    ok(&nodus(&b, &["compute", "volunteer", "on", "--cores", "1"]));
    wait_for("some units accepted", || {
        status(&a, &id[..8])["done"].as_u64().unwrap_or(0) >= 5
    });
    coordinator.child.kill().unwrap();
    coordinator.child.wait().unwrap();
    let _coordinator = up(&a);
    // Its new port: on a network of two, nobody else could tell the volunteer.
    connect(&b, &a);
    let accepted = status(&a, &id)["done"].as_u64().unwrap();
    assert!(
        accepted >= 5,
        "what was accepted before kill -9 is still accepted"
    );
    wait_for("the project to finish", || {
        status(&a, &id)["state"] == "Finished"
    });
    let s = status(&a, &id);
    assert_eq!(
        (s["done"].as_u64(), s["failed"].as_u64()),
        (Some(60), Some(0)),
        "{s}"
    );

    let out = dir.path().join("out");
    let o = nodus(
        &a,
        &["compute", "results", &id, "-o", out.to_str().unwrap()],
    );
    ok(&o);
    assert!(
        stdout(&o).contains("wrote 60 accepted units"),
        "{}",
        stdout(&o)
    );
    let mut sum = 0;
    for unit in 0..60 {
        let text = std::fs::read_to_string(out.join(format!("{unit:02}.out"))).unwrap();
        let mut f = text.split_whitespace();
        assert_eq!(f.next(), Some(unit.to_string().as_str()));
        sum += f.next().unwrap().parse::<u64>().unwrap();
    }
    assert_eq!(sum, nodus_compute::examples::primes_below(60 * 20_000));

    let v = json(&nodus(&b, &["--json", "compute", "volunteer", "status"]));
    assert_eq!(v["on"], true);
    let p = &v["projects"][0];
    assert_eq!(p["name"], "primes");
    assert!(p["credit"].as_u64().unwrap() > 0, "{v}");
    let human = nodus(&b, &["compute", "volunteer", "status"]);
    ok(&human);
    assert!(stdout(&human).contains("primes"), "{}", stdout(&human));
    let listed = nodus(&a, &["compute", "list"]);
    assert!(stdout(&listed).contains(&id), "{}", stdout(&listed));
}

#[test]
fn a_volunteer_killed_with_unreported_results_reports_them_when_back() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, mut coordinator, mut volunteer) = coordinator_and_volunteer(dir.path(), 81);
    let wasm = dir.path().join("primes.wasm");
    std::fs::write(&wasm, nodus_compute::examples::primes()).unwrap();
    // Units of a tenth of a second or more: seen in progress before they are done.
    let o = nodus(
        &a,
        &[
            "compute",
            "submit",
            wasm.to_str().unwrap(),
            "--inputs",
            "0..20",
            "--arg",
            "300000",
            "--quorum",
            "1",
        ],
    );
    ok(&o);
    let id = stdout(&o).trim().to_string();
    ok(&nodus(&b, &["compute", "volunteer", "on", "--cores", "1"]));
    wait_for("work handed out", || {
        status(&a, &id)["in_progress"].as_u64().unwrap_or(0) > 0
    });
    // The coordinator dies; the volunteer finishes units it cannot report.
    coordinator.child.kill().unwrap();
    coordinator.child.wait().unwrap();
    let vstatus = || json(&nodus(&b, &["--json", "compute", "volunteer", "status"]));
    wait_for("finished units kept", || {
        vstatus()["unreported"].as_u64().unwrap_or(0) > 0
    });
    ok(&nodus(&b, &["compute", "volunteer", "off"]));
    wait_for("running units to end", || {
        vstatus()["running"]
            .as_array()
            .is_some_and(|r| r.is_empty())
    });
    let unreported = vstatus()["unreported"].as_u64().unwrap();
    volunteer.child.kill().unwrap();
    volunteer.child.wait().unwrap();

    let _coordinator = up(&a);
    let before = status(&a, &id)["done"].as_u64().unwrap();
    let _volunteer = up(&b);
    connect(&b, &a);
    wait_for("the kept units reported", || {
        vstatus()["unreported"].as_u64() == Some(0)
    });
    assert_eq!(vstatus()["on"], false, "not donating is remembered");
    assert_eq!(
        status(&a, &id)["done"].as_u64().unwrap(),
        before + unreported,
        "each of the {unreported} units finished before kill -9 is accepted"
    );
}

/// wei `nodus compute volunteer status` says `dir`'s compute account holds.
fn held(dir: &Path) -> u128 {
    let v = json(&nodus(dir, &["--json", "compute", "volunteer", "status"]));
    v["payout_balance"]
        .as_str()
        .and_then(|b| b.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_payment_in_flight_survives_its_coordinator_killed_and_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, mut coordinator, _volunteer) = coordinator_and_volunteer(dir.path(), 82);
    let wasm = dir.path().join("primes.wasm");
    std::fs::write(&wasm, nodus_compute::examples::primes()).unwrap();
    let submit = |pay: &str| {
        nodus(
            &a,
            &[
                "compute",
                "submit",
                wasm.to_str().unwrap(),
                "--inputs",
                "0..10",
                "--arg",
                "1000",
                "--quorum",
                "1",
                "--pay",
                pay,
            ],
        )
    };
    fails_saying(&submit("lots"), "--pay takes ether per billion fuel");
    let v = json(&nodus(&a, &["--json", "compute", "volunteer", "status"]));
    let account = v["payout"]
        .as_str()
        .expect("a node with a chain has an account");
    // Fund the coordinator's account by mining to it, then stop: nothing mines yet.
    ok(&nodus(&a, &["mine", "--to", account]));
    wait_for("the compute account to hold ether", || held(&a) > 0);
    ok(&nodus(&a, &["mine", "--stop"]));

    let o = submit("0.001");
    ok(&o);
    let id = stdout(&o).trim().to_string();
    ok(&nodus(&b, &["compute", "volunteer", "on", "--cores", "1"]));
    wait_for("the project to finish with a payment on its way", || {
        let s = status(&a, &id);
        s["state"] == "Finished" && s["pay"]["sending"].as_str().is_some_and(|w| w != "0")
    });
    let human = nodus(&a, &["compute", "status", &id]);
    ok(&human);
    assert!(
        stdout(&human).contains("ETH on its way"),
        "{}",
        stdout(&human)
    );
    coordinator.child.kill().unwrap();
    coordinator.child.wait().unwrap();

    let _coordinator = up(&a);
    connect(&b, &a);
    ok(&nodus(&a, &["mine"]));
    wait_for("everything owed paid and mined", || {
        let p = &status(&a, &id)["pay"];
        p["owed"] == "0" && p["sending"] == "0"
    });
    ok(&nodus(&a, &["mine", "--stop"]));
    let s = status(&a, &id);
    let row = &s["volunteers"][0];
    let paid: u128 = row["paid"].as_str().unwrap().parse().unwrap();
    let earned = nodus_compute::pay::earned(row["credit"].as_u64().unwrap(), 10u128.pow(15));
    assert!(earned > 0, "{s}");
    assert_eq!(paid, earned, "{s}");
    assert_eq!(s["pay"]["paid"], earned.to_string());
    // What arrived is what was earned: the payment sent before kill -9 landed once.
    wait_for("the volunteer's chain to show its pay", || {
        held(&b) == earned
    });
    let v = nodus(&b, &["compute", "volunteer", "status"]);
    assert!(stdout(&v).contains("paid to 0x"), "{}", stdout(&v));
}
