//! `nodus onion` as a person uses it, on a node process: the SOCKS5 proxy's address in
//! endpoints.json and in `nodus onion status`, the onion key's file mode and its being
//! kept across a restart; `nodus onion serve` printing an address that a restart keeps;
//! and `nodus bench onion`'s plumbing with tiny sizes (timing is never asserted).

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
fn onion_serve_prints_an_address_that_a_restart_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_at(d, "127.0.185.2");
    let node = up(d);
    let o = nodus(d, &["onion", "serve", "8080"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let address = stdout(&o).trim().to_string();
    assert!(
        address.ends_with(".nodus") && address.len() == 62,
        "{address}"
    );
    let key = d.join("onion/services/8080.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let served =
        |d: &std::path::Path| json(&nodus(d, &["--json", "onion", "status"]))["services"].clone();
    assert_eq!(served(d)[0]["address"].as_str(), Some(address.as_str()));
    assert_eq!(served(d)[0]["target"].as_str(), Some("127.0.0.1:8080"));

    drop(node);
    let _node = up(d);
    assert_eq!(
        served(d)[0]["address"].as_str(),
        Some(address.as_str()),
        "served again after the restart, at the same address"
    );
    let text = stdout(&nodus(d, &["onion", "status"]));
    assert!(text.contains(&address), "{text}");

    assert!(nodus(d, &["onion", "unserve", "8080"]).status.success());
    assert_eq!(served(d).as_array().map(Vec::len), Some(0));
    fails_saying(&nodus(d, &["onion", "unserve", "8080"]), "not served");
    // Serving it again: the key was kept, so the address is the same.
    let again = nodus(d, &["onion", "serve", "8080"]);
    assert_eq!(stdout(&again).trim(), address);
    fails_saying(&nodus(d, &["onion", "serve", "0"]), "1 to 65535");
}

#[test]
fn the_relay_is_turned_on_and_off_with_its_limit_at_run_time_and_that_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_at(d, "127.0.185.3");
    let node = up(d);
    let role = |d: &std::path::Path| {
        let v = json(&nodus(d, &["--json", "onion", "status"]));
        (v["relay"].as_bool().unwrap(), v["exit"].as_bool().unwrap())
    };
    assert_eq!(role(d), (false, false));
    let bandwidth = |d: &std::path::Path| {
        json(&nodus(d, &["--json", "onion", "status"]))["relay_bandwidth"].as_u64()
    };
    let o = nodus(
        d,
        &["onion", "relay", "on", "--exit", "--bandwidth", "1048576"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("relaying and exiting for others at most 1024 KiB/s"),
        "{}",
        stdout(&o)
    );
    assert_eq!(role(d), (true, true));
    assert_eq!(bandwidth(d), Some(1_048_576));
    drop(node);
    let node = up(d);
    assert_eq!(role(d), (true, true), "kept across a restart");
    assert_eq!(bandwidth(d), Some(1_048_576), "the limit too");
    assert!(nodus(d, &["onion", "relay", "on"]).status.success());
    assert_eq!(role(d), (true, false));
    assert_eq!(
        bandwidth(d),
        Some(0),
        "without --bandwidth, the config's (none)"
    );
    assert!(nodus(d, &["onion", "relay", "off"]).status.success());
    assert_eq!(role(d), (false, false));
    drop(node);
    let _node = up(d);
    assert_eq!(role(d), (false, false), "off is kept too");
}

#[test]
fn bench_onion_prints_every_row() {
    let o = std::process::Command::new(BIN)
        .args([
            "--json", "bench", "onion", "--mib", "1", "--rounds", "2", "--no-tor",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    for field in [
        "circuit_build_ms",
        "first_byte_ms",
        "service_first_byte_with_rendezvous_ms",
        "service_first_byte_ms",
    ] {
        assert!(v[field]["p50"].as_f64().is_some(), "{field}: {v}");
    }
    assert!(v["onion_mb_s"].as_f64().is_some_and(|x| x > 0.0), "{v}");
    assert!(v["direct_mb_s"].as_f64().is_some_and(|x| x > 0.0), "{v}");
    assert!(v["service_mb_s"].as_f64().is_some_and(|x| x > 0.0), "{v}");
    let long = &v["long_round_trip"];
    for field in ["congestion_control_mb_s", "fixed_window_256_mb_s"] {
        assert!(
            long[field].as_f64().is_some_and(|x| x > 0.0),
            "{field}: {v}"
        );
    }
    assert!(long["largest_window_cells"].as_u64().is_some(), "{v}");
}
