//! `nodus social` as a person uses it, on a node process: the relay's address in
//! endpoints.json, posting and reading without a Nostr client, the key file's mode, and
//! what the relay acknowledged (to a Nostr client or to the CLI) surviving kill -9;
//! keys made and imported, follows and the profile kept across kill -9, the live feed.

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
        "64 hex characters or an npub1",
    );
}

fn with_stdin(dir: &std::path::Path, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn keys_follows_and_the_profile_are_a_persons_and_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_at(d, "127.0.50.2");
    let mut node = up(d);
    let first = json(&nodus(d, &["--json", "social", "key", "show"]));
    assert!(first["npub"].as_str().unwrap().starts_with("npub1"));

    // A new key: the old one is kept beside it, mode 0600.
    let made = json(&nodus(d, &["--json", "social", "key", "new"]));
    assert_ne!(made["pubkey"], first["pubkey"]);
    let kept = made["previous_key_kept_at"].as_str().unwrap();
    assert_eq!(
        std::fs::metadata(kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // An imported one, from standard input, as nsec.
    let mine = Keys::generate();
    let nsec = nodus_social::keys::nsec(&mine.secret());
    let imported = json(&with_stdin(
        d,
        &["--json", "social", "key", "import"],
        &nsec,
    ));
    assert_eq!(imported["pubkey"], json!(hex::encode(mine.public())));
    fails_saying(
        &with_stdin(d, &["social", "key", "import"], "not a key\n"),
        "is not a key",
    );
    fails_saying(
        &with_stdin(d, &["social", "key", "import"], ""),
        "no key on standard input",
    );

    // Follows, by npub and by hex; a second follow changes nothing.
    let (alice, bob) = (Keys::generate(), Keys::generate());
    let alice_npub = nodus_social::keys::npub(&alice.public());
    let out = nodus(
        d,
        &["social", "follow", &alice_npub, &hex::encode(bob.public())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let again = stdout(&nodus(d, &["social", "follow", &alice_npub]));
    assert!(again.contains("already so"), "{again}");
    fails_saying(&nodus(d, &["social", "follow", "carol"]), "is not a key");
    let out = nodus(d, &["social", "unfollow", &hex::encode(bob.public())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let profile = json(&nodus(
        d,
        &[
            "--json", "social", "profile", "--name", "mine", "--about", "first",
        ],
    ));
    assert_eq!(
        profile["profile"],
        json!({"name": "mine", "about": "first"})
    );
    let profile = json(&nodus(
        d,
        &["--json", "social", "profile", "--about", "second"],
    ));
    assert_eq!(
        profile["profile"],
        json!({"name": "mine", "about": "second"})
    );

    node.child.kill().unwrap();
    node.child.wait().unwrap();
    let _node = up(d);
    let follows = json(&nodus(d, &["--json", "social", "follows"]));
    assert_eq!(
        follows,
        json!([{"pubkey": hex::encode(alice.public()), "npub": alice_npub}])
    );
    let status = json(&nodus(d, &["--json", "social", "status"]));
    assert_eq!(status["pubkey"], json!(hex::encode(mine.public())));
    assert_eq!(status["follows"], json!(1));
    let profile = json(&nodus(d, &["--json", "social", "profile"]));
    assert_eq!(
        profile["profile"],
        json!({"name": "mine", "about": "second"})
    );

    // The live feed: what is there, then what arrives.
    nodus(d, &["social", "post", "before following"]);
    let mut live = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(d)
        .args([
            "--json", "social", "feed", "--follow", "--limit", "1", "--count", "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(live.stdout.take().unwrap()));
    let first_line: serde_json::Value =
        serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first_line["content"], json!("before following"));
    nodus(d, &["social", "post", "while following"]);
    let next: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(next["content"], json!("while following"));
    assert!(live.wait().unwrap().success());
}

/// The benchmark's plumbing, with tiny sizes: every nodus row is measured (timing is
/// never asserted); nostr-rs-relay is not installed by a test.
#[test]
fn bench_social_measures_every_row() {
    let o = std::process::Command::new(BIN)
        .args([
            "--json",
            "bench",
            "social",
            "--events",
            "200",
            "--stored",
            "2000",
            "--queries",
            "10",
            "--missed",
            "50",
            "--no-install",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    for row in ["one", "many", "p50_us", "p99_us", "catch_up_s"] {
        assert!(
            v["nodus"][row].as_f64().is_some_and(|x| x > 0.0),
            "{row}: {v}"
        );
    }
}
