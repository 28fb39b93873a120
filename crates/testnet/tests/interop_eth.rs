//! Tier 3: the tools DApp developers use, unchanged, against nodus. solc (npm) compiles
//! an OpenZeppelin ERC-20; web3.py deploys it and moves tokens and ether through node
//! A's JSON-RPC while node B mines, and reads everything back from node C, over HTTP and
//! through subscriptions over WebSocket; ethers 6 does the same through a
//! WebSocketProvider on node C alone.
//! Needs node with `npm ci` in interop/eth, and `pip install -r interop/eth/requirements.txt`,
//! which scripts/test does.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use nodus_chain::primitives::Address;
use nodus_testnet::Testnet;
use serde_json::Value;

fn eth_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/eth")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web3py_deploys_an_openzeppelin_erc20_and_moves_tokens_across_three_nodes() {
    let dir = eth_dir();
    assert!(
        dir.join("node_modules/solc").exists()
            && dir.join("node_modules/@openzeppelin/contracts").exists(),
        "solc and OpenZeppelin are not installed: run scripts/test (it runs `npm ci` in {})",
        dir.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let compiled = Command::new("node")
        .arg("compile.mjs")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "solc: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let artifact = tmp.path().join("Token.json");
    std::fs::write(&artifact, &compiled.stdout).unwrap();

    let net = Testnet::start(3, &tmp.path().join("net")).await.unwrap();
    net.wait_connected(2, Duration::from_secs(30))
        .await
        .unwrap();
    let url = |k: usize| {
        net.node(k)
            .service::<nodus_chain::ChainHandle>()
            .unwrap()
            .json_rpc_url()
            .unwrap()
    };
    let miner = Address::repeat_byte(0xb1);
    net.node(1)
        .service::<nodus_chain::ChainHandle>()
        .as_ref()
        .unwrap()
        .set_mining(true, None, Some(miner));

    let (a, c) = (url(0), url(2));
    let c_ws = c.replacen("http://", "ws://", 1);
    let script = dir.join("erc20.py");
    let mut web3py = Command::new("python3");
    web3py
        .arg(script)
        .args([
            "--submit",
            &a,
            "--read",
            &c,
            "--read-ws",
            &c_ws,
            "--artifact",
        ])
        .arg(&artifact);
    let v = run("web3.py", web3py).await;
    assert_eq!(v["logs"], 2, "mint and transfer logs: {v}");
    let miners = v["miners"].as_array().unwrap();
    assert_eq!(miners.len(), 1);
    assert_eq!(
        miners[0].as_str().unwrap().to_lowercase(),
        miner.to_string().to_lowercase(),
        "node B mined every block"
    );
    assert!(
        v["subscriptions"]["heads"].as_u64() >= Some(1)
            && v["subscriptions"]["pending"].as_u64() >= Some(1),
        "{v}"
    );
    println!("{v}");

    let mut ethers = Command::new("node");
    ethers
        .arg("subscribe.mjs")
        .arg(&c_ws)
        .arg(&artifact)
        .current_dir(&dir);
    let v = run("ethers", ethers).await;
    println!("{v}");
    net.shutdown().await;
}

/// Runs a client script to its end; the JSON line it printed last, which says `ok`.
async fn run(what: &str, mut cmd: Command) -> Value {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{what} printed no JSON ({e}): {stdout}"));
    assert_eq!(v["ok"], true, "{what}: {v}");
    v
}
