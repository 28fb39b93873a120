//! `nodus onion` as a person uses it, on a node process: the SOCKS5 proxy's address in
//! endpoints.json and in `nodus onion status`, the onion key's file mode and its being
//! kept across a restart; and `nodus bench onion`'s plumbing with tiny sizes (timing is
//! never asserted).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

#[test]
fn status_names_the_proxy_and_the_onion_key_is_private_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_at(d, "127.0.185.1");
    let node = up(d);
    let socks = endpoints(d).unwrap()["extra"]["onion_socks"]
        .as_str()
        .expect("the proxy's address in endpoints.json")
        .to_string();
    let status = json(&nodus(d, &["--json", "onion", "status"]));
    assert_eq!(status["socks"].as_str(), Some(socks.as_str()));
    assert_eq!(status["relay"].as_bool(), Some(false));
    let key = d.join("onion/onion.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = std::fs::read(&key).unwrap();
    drop(node);
    let _node = up(d);
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the same key after a restart"
    );
    let socks = endpoints(d).unwrap()["extra"]["onion_socks"]
        .as_str()
        .unwrap()
        .to_string();
    let text = stdout(&nodus(d, &["onion", "status"]));
    assert!(
        text.contains(&socks) && text.contains("client only"),
        "{text}"
    );
}

#[test]
fn bench_onion_prints_every_row() {
    let o = std::process::Command::new(BIN)
        .args(["--json", "bench", "onion", "--mib", "1", "--rounds", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    for field in ["circuit_build_ms", "first_byte_ms"] {
        assert!(v[field]["p50"].as_f64().is_some(), "{field}: {v}");
    }
    assert!(v["onion_mb_s"].as_f64().is_some_and(|x| x > 0.0), "{v}");
    assert!(v["direct_mb_s"].as_f64().is_some_and(|x| x > 0.0), "{v}");
}
