//! `nodus social` as a person uses it, on a node process: the relay's address in
//! endpoints.json, posting and reading without a Nostr client, the key file's mode, and
//! what the relay acknowledged (to a Nostr client or to the CLI) surviving kill -9.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use nodus_social::Keys;
use nodus_social::client::Client;
use nodus_social::relay::now;
use serde_json::json;

#[test]
fn notes_acknowledged_survive_kill_9_and_the_cli_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_at(d, "127.0.50.1");
    let mut node = up(d);

    let relay = endpoints(d).unwrap()["extra"]["nostr"]
        .as_str()
        .expect("the relay's address in endpoints.json")
        .to_string();
    let status = json(&nodus(d, &["--json", "social", "status"]));
    assert_eq!(status["relay"].as_str(), Some(relay.as_str()));
    let key = d.join("social/key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let posted = json(&nodus(
        d,
        &["--json", "social", "post", "kept", "through", "a", "crash"],
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let note = Keys::generate().sign(now(), 1, vec![], "from a Nostr client, acknowledged");
    // And many at once, pipelined, as the store writes them in shared transactions.
    let many_author = Keys::generate();
    let many: Vec<_> = (0..300)
        .map(|i| many_author.sign(now(), 1, vec![], &format!("pipelined {i}")))
        .collect();
    rt.block_on(async {
        let mut c = Client::connect(&relay).await.unwrap();
        assert_eq!(c.publish(&note).await.unwrap(), (true, String::new()));
        assert_eq!(c.publish_many(&many, 64).await.unwrap(), 300);
    });
    // No clean shutdown: what was acknowledged must already be on disk.
    node.child.kill().unwrap();
    node.child.wait().unwrap();

    let _node = up(d);
    let feed = json(&nodus(d, &["--json", "social", "feed", "--limit", "400"]));
    let contents: Vec<&str> = feed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert!(contents.contains(&"kept through a crash"), "{feed}");
    assert!(
        contents.contains(&"from a Nostr client, acknowledged"),
        "{feed}"
    );
    assert_eq!(
        feed.as_array()
            .unwrap()
            .iter()
            .find(|e| e["content"] == json!("kept through a crash"))
            .unwrap()["id"],
        posted["id"]
    );
    let relay = endpoints(d).unwrap()["extra"]["nostr"]
        .as_str()
        .unwrap()
        .to_string();
    rt.block_on(async {
        let mut c = Client::connect(&relay).await.unwrap();
        let author = hex::encode(many_author.public());
        c.send_raw(json!(["COUNT", "n", {"authors": [author]}]).to_string())
            .await
            .unwrap();
        assert_eq!(c.next().await.unwrap()[2], json!({"count": 300}));
    });
    // The same key after the restart.
    let again = json(&nodus(d, &["--json", "social", "status"]));
    assert_eq!(again["pubkey"], status["pubkey"]);

    // A person's mistake: an author that is not a key.
    fails_saying(
        &nodus(d, &["social", "feed", "--author", "bob"]),
        "64-character hex",
    );
}
