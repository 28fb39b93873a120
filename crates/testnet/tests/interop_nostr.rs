//! Tier 3: nostr-tools (interop/nostr/client.mjs, on Node with the `ws` package) against
//! nodus relays on a 3-node network: nostr-tools authenticates (NIP-42); a note it
//! publishes through node 0 reaches its live subscription on node 2 and is stored by
//! node 1 (both follow its author); an event nodus signed verifies in nostr-tools and
//! one nostr-tools signed verifies in nodus; a forged event is refused with `invalid:`;
//! NIP-11 read by fetch.
//! Needs `node` and `npm ci` in interop/nostr, which scripts/test does.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use nodus_social::client::Client;
use nodus_social::relay::now;
use nodus_social::{Event, Keys, SocialHandle, topics};
use nodus_testnet::{Testnet, wait_until};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

fn url(net: &Testnet, k: usize) -> String {
    net.node(k).service::<SocialHandle>().unwrap().relay_url()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nostr_tools_publishes_and_subscribes_across_nodus_relays() {
    nodus_testnet::test_logs();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/nostr");
    assert!(
        dir.join("node_modules/nostr-tools").exists(),
        "run `npm ci` in {} (scripts/test does)",
        dir.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, tmp.path()).await.unwrap();
    let author = Keys::generate();
    for k in [1, 2] {
        let h = net.node(k).service::<SocialHandle>().unwrap();
        h.set_follow(author.public(), true).await.unwrap();
    }
    net.wait_topic_known(&topics::author(&author.public()), 0, &[1, 2], T)
        .await
        .unwrap();

    let ours = Keys::generate().sign(
        now(),
        1,
        vec![vec!["t".into(), "interop".into()]],
        "signed by nodus: \"quotes\", a newline\n, and ünïcödé",
    );
    let (a, c) = (url(&net, 0), url(&net, 2));
    let ours_json = ours.to_json();
    let secret = hex::encode(author.secret());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(&dir)
            .arg("client.mjs")
            .args([&a, &c, &ours_json, &secret])
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "nostr-tools client failed: {stderr}"
    );
    let found: Value = serde_json::from_slice(
        output
            .stdout
            .split(|b| *b == b'\n')
            .find(|l| !l.is_empty())
            .unwrap(),
    )
    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));

    assert_eq!(
        found["auth"],
        json!(""),
        "nostr-tools's NIP-42 answer: {found}"
    );
    assert_eq!(found["nodus_event_verifies"], json!(true), "{found}");
    assert_eq!(found["received_on_other_node"], json!(true), "{found}");
    assert_eq!(found["published"], json!(""), "{found}");
    assert_eq!(found["nodus_event_published"], json!(""), "{found}");
    let refusal = found["forged_refusal"].as_str().unwrap_or_default();
    assert!(refusal.starts_with("invalid:"), "{found}");
    assert!(
        found["nip11_supported_nips"]
            .as_array()
            .unwrap()
            .contains(&json!(1))
    );
    for nip in [42, 77] {
        assert!(
            found["nip11_supported_nips"]
                .as_array()
                .unwrap()
                .contains(&json!(nip)),
            "{found}"
        );
    }

    // Node 1 stored what nostr-tools signed, and its signature verifies here.
    let id = found["id"].as_str().unwrap().to_string();
    let b = url(&net, 1);
    let stored = wait_until(T, "node 1 to store the nostr-tools note", || {
        let (b, id) = (b.clone(), id.clone());
        async move {
            let Ok(mut client) = Client::connect(&b).await else {
                return false;
            };
            let got = client.subscribe("x", &[json!({"ids": [id]})]).await;
            client.close().await;
            matches!(got.as_deref(), Ok([e]) if e.verify().is_ok())
        }
    })
    .await;
    stored.unwrap();
    let mut client = Client::connect(&b).await.unwrap();
    let got: Vec<Event> = client
        .subscribe("y", &[json!({"ids": [id]})])
        .await
        .unwrap();
    assert_eq!(
        hex::encode(got[0].pubkey),
        found["pubkey"].as_str().unwrap()
    );
    assert_eq!(got[0].content, "hello from nostr-tools");
    net.shutdown().await;
}
