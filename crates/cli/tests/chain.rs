//! The chain and wallet commands as a person uses them: separate node processes, kill
//! -9 while importing, `bench chain`.

mod common;

#[allow(unused_imports)]
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A chain node: JSON-RPC on a free port, one-second blocks from an easy start, hashing
/// capped so the test leaves CPU to the rest.
fn chain_config(ip: &str) -> String {
    format!(
        "[p2p]\nlisten = [\"/ip4/{ip}/tcp/0\"]\nmdns = false\n[chain]\nrpc_listen = \"127.0.0.1:0\"\n\
         [chain.genesis]\nblock_time_secs = 1\ninitial_difficulty = 20000\n\
         [chain.mining]\nmax_hashes_per_sec = 400000\n"
    )
}

fn chain_json(dir: &Path) -> serde_json::Value {
    json(&nodus(dir, &["--json", "chain"]))
}

/// The chain commands on two real node processes: a wallet account imported from a
/// private key (its keystore readable by web3.py's eth_account), ether sent and mined,
/// blocks and transactions shown. Then kill -9 of the importing node again and again
/// while it syncs: each restart opens a consistent chain and catches up; and a
/// transaction accepted just before a kill is still pending after the restart.
#[test]
fn chain_commands_and_kill_9_during_block_import() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (d, ip) in [(&a, "127.0.48.1"), (&b, "127.0.49.1")] {
        assert!(nodus(d, &["init"]).status.success());
        write_config(d, chain_config(ip)).unwrap();
    }
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let pw = pw.to_str().unwrap();
    let _na = up(&a);
    // b joins through a, also after every restart.
    let bootstrap = format!("mdns = false\nbootstrap = [\"{}\"]\n", p2p_addr(&a));
    write_config(
        &b,
        chain_config("127.0.49.1").replacen("mdns = false\n", &bootstrap, 1),
    )
    .unwrap();
    let mut nb = up(&b);

    // The first development account, imported; its keystore opens in eth_account.
    let dev_key = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    let dev = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let imported = json(&nodus(
        &b,
        &["--json", "wallet", "import", dev_key, "--password-file", pw],
    ));
    assert_eq!(imported["address"], dev);
    let file = imported["file"].as_str().unwrap().to_string();
    let py = Command::new("python3")
        .args([
            "-c",
            "import json,sys; from eth_account import Account; \
             print(Account.from_key(Account.decrypt(json.load(open(sys.argv[1])), sys.argv[2])).address)",
            &file,
            "correct horse",
        ])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&py).trim(),
        dev,
        "web3.py opens our keystore: {}",
        stderr(&py)
    );
    fails_saying(
        &nodus(&b, &["wallet", "import", dev_key, "--password-file", pw]),
        "already",
    );

    assert!(nodus(&a, &["mine"]).status.success());
    let to = "0x000000000000000000000000000000000000bEEF";
    let sent = nodus(&b, &["send", to, "1.5", "--password-file", pw]);
    assert!(sent.status.success(), "{}{}", stdout(&sent), stderr(&sent));
    assert!(stdout(&sent).contains("in block"), "{}", stdout(&sent));
    let hash = stdout(&sent)
        .lines()
        .find_map(|l| l.strip_prefix("transaction "))
        .unwrap()
        .trim()
        .to_string();
    let bal = json(&nodus(&a, &["--json", "wallet", "balance", to]));
    assert_eq!(bal[0]["balance"], "1500000000000000000");
    let shown = json(&nodus(&a, &["--json", "tx", &hash]));
    assert_eq!(shown["receipt"]["status"], "0x1");
    assert!(nodus(&a, &["block", "latest"]).status.success());
    fails_saying(
        &nodus(&b, &["send", "0xnot-an-address", "1"]),
        "is not an address",
    );

    // kill -9 of b while it imports what a keeps mining.
    for round in 0..5u64 {
        std::thread::sleep(Duration::from_millis(150 + 130 * round));
        nb.child.kill().unwrap();
        nb.child.wait().unwrap();
        nb = up(&b);
        let target = chain_json(&a)["height"].as_u64().unwrap();
        wait_for("b to catch up after a kill", || {
            chain_json(&b)["height"].as_u64().unwrap() >= target
        });
    }

    // A transaction accepted just before kill -9 is still pending after the restart.
    assert!(nodus(&a, &["mine", "--stop"]).status.success());
    let sent = nodus(
        &b,
        &[
            "--json",
            "send",
            to,
            "2",
            "--no-wait",
            "--password-file",
            pw,
        ],
    );
    assert!(sent.status.success(), "{}", stderr(&sent));
    let pending = json(&sent)["hash"].as_str().unwrap().to_string();
    nb.child.kill().unwrap();
    nb.child.wait().unwrap();
    let _nb = up(&b);
    let t = json(&nodus(&b, &["--json", "tx", &pending]));
    assert_eq!(t["transaction"]["hash"], pending.as_str());
    assert!(t["receipt"].is_null(), "not mined yet");
    assert!(nodus(&b, &["mine"]).status.success());
    wait_for("the kept transaction to be mined", || {
        !json(&nodus(&b, &["--json", "tx", &pending]))["receipt"].is_null()
    });
}

/// `nodus bench chain` runs nodus and Hardhat side by side and prints every row with a
/// ratio (small numbers: a smoke test, not a measurement).
#[test]
fn bench_chain_prints_nodus_beside_hardhat() {
    let o = Command::new(BIN)
        .args([
            "--json",
            "bench",
            "chain",
            "--calls",
            "200",
            "--txs",
            "20",
            "--import",
            "400",
            "--accounts",
            "1000",
            "--nodes",
            "3",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let v = json(&o);
    assert_eq!(v["txs"], 20);
    for k in ["intake", "block_build", "block_import"] {
        assert!(v["nodus"][k].as_f64().unwrap() > 0.0, "nodus {k}: {v}");
    }
    let rows = v["import"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "value and ERC-20 transfers: {v}");
    assert!(
        rows.iter()
            .all(|r| r["end_to_end_tps"].as_f64().unwrap() > 0.0)
    );
    assert!(v["propagation"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(
        v["hardhat"]["block_mine"].as_f64().unwrap_or(0.0) > 0.0,
        "Hardhat was measured in the same run: {v}\n{}",
        stderr(&o)
    );
}
