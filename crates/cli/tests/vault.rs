//! `nodus vault` as a person uses it, on node processes: import, list, show, export
//! (byte-for-byte stable), an invalid bundle refused with its path, the FHIR read API
//! behind the token, the key file's mode; `kill -9` during imports leaves whole
//! bundles or nothing; a replica killed with `kill -9` loses nothing, and a patient
//! whose vault file is lost takes it back from the replica.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use nodus_vault::synthetic::{PATIENT, copies, count};
use serde_json::Value;

fn token(d: &Path) -> String {
    std::fs::read_to_string(d.join("api.cookie")).unwrap()
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
}

fn records(d: &Path) -> usize {
    json(&nodus(d, &["--json", "vault", "list"]))
        .as_array()
        .unwrap()
        .len()
}

fn body(resp: &str) -> Value {
    let (_, b) = resp.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(b).unwrap_or_else(|e| panic!("{e}: {b}"))
}

#[test]
fn a_person_imports_reads_exports_and_fhir_tools_read_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_at(d, "127.0.60.1");
    let _node = up(d);
    let file = d.join("patient.json");
    std::fs::write(&file, PATIENT).unwrap();
    let o = nodus(d, &["vault", "import", file.to_str().unwrap()]);
    ok(&o);
    assert!(
        stdout(&o).contains(&format!("{} new", count(None))),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        std::fs::metadata(d.join("vault/vault.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let conditions = json(&nodus(
        d,
        &["--json", "vault", "list", "--type", "Condition"],
    ));
    let conditions = conditions.as_array().unwrap();
    assert_eq!(conditions.len(), count(Some("Condition")));
    let id = conditions[0]["id"].as_str().unwrap();
    let shown = json(&nodus(d, &["vault", "show", &format!("Condition/{id}")]));
    assert_eq!(shown["id"], id);

    // Export twice: the same bytes; and it is a Bundle again.
    let (a, b) = (d.join("a.json"), d.join("b.json"));
    ok(&nodus(d, &["vault", "export", "-o", a.to_str().unwrap()]));
    ok(&nodus(d, &["vault", "export", "-o", b.to_str().unwrap()]));
    let exported = std::fs::read(&a).unwrap();
    assert_eq!(exported, std::fs::read(&b).unwrap());
    let bundle: Value = serde_json::from_slice(&exported).unwrap();
    assert_eq!(bundle["entry"].as_array().unwrap().len(), count(None));

    // A person's mistakes: told where, nothing kept.
    let mut bad: Value = serde_json::from_slice(PATIENT).unwrap();
    bad["entry"][3]["resource"]["status"] = Value::String("bogus".into());
    bad["entry"][3]["resource"]["id"] = Value::String("new-one".into());
    let bad_file = d.join("bad.json");
    std::fs::write(&bad_file, serde_json::to_vec(&bad).unwrap()).unwrap();
    fails_saying(
        &nodus(d, &["vault", "import", bad_file.to_str().unwrap()]),
        "Bundle.entry[3].resource.status",
    );
    std::fs::write(&bad_file, b"{ not json").unwrap();
    fails_saying(
        &nodus(d, &["vault", "import", bad_file.to_str().unwrap()]),
        "not JSON",
    );
    fails_saying(
        &nodus(d, &["vault", "import", "/nonexistent.json"]),
        "cannot read the bundle",
    );
    assert_eq!(records(d), count(None));
    fails_saying(
        &nodus(d, &["vault", "grant", "nobody"]),
        "neither a peer id nor a vault key",
    );
    fails_saying(
        &nodus(
            d,
            &[
                "vault",
                "grant",
                "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf",
                "--until",
                "2001-01-01",
            ],
        ),
        "in the past",
    );
    fails_saying(
        &nodus(d, &["vault", "show", "Condition/nope"]),
        "no record Condition/nope",
    );

    // The FHIR read API at /fhir (and under the vault's prefix): behind the token.
    let t = token(d);
    for base in ["/fhir", "/api/v1/vault/fhir"] {
        let (code, _) = api_get(d, &format!("{base}/metadata"), None);
        assert_eq!(code, 401);
        let (code, resp) = api_get(d, &format!("{base}/Condition?_id={id}"), Some(&t));
        assert_eq!(code, 200);
        let url = body(&resp)["entry"][0]["fullUrl"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(url.ends_with(&format!("{base}/Condition/{id}")), "{url}");
    }
    let (code, resp) = api_get(d, "/fhir/metadata", Some(&t));
    assert_eq!(code, 200);
    assert!(
        resp.to_lowercase()
            .contains("content-type: application/fhir+json"),
        "{resp}"
    );
    assert_eq!(body(&resp)["fhirVersion"], "4.0.1");
    let (code, resp) = api_get(d, &format!("/fhir/Condition/{id}"), Some(&t));
    assert_eq!(code, 200);
    assert_eq!(body(&resp), shown);
    let patient = json(&nodus(d, &["--json", "vault", "list", "--type", "Patient"]))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, resp) = api_get(d, &format!("/fhir/Observation?patient={patient}"), Some(&t));
    assert_eq!(code, 200);
    let found = body(&resp);
    assert_eq!(found["type"], "searchset");
    assert_eq!(found["total"], count(Some("Observation")));
    let (code, resp) = api_get(d, "/fhir/Observation?patient=nobody", Some(&t));
    assert_eq!((code, body(&resp)["total"].as_u64()), (200, Some(0)));
    let (code, resp) = api_get(d, "/fhir/Observation/nope", Some(&t));
    assert_eq!(
        (code, body(&resp)["resourceType"].as_str()),
        (404, Some("OperationOutcome"))
    );
    let (code, _) = api_get(d, "/fhir/Observation?code=8480-6", Some(&t));
    assert_eq!(code, 400);
    let (code, _) = api_get(d, "/fhir/Observatio/x", Some(&t));
    assert_eq!(code, 404);

    // The log holds the import, and its hashes chain.
    let log = json(&nodus(d, &["--json", "vault", "log"]));
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["resourceType"], "AuditEvent");
    let verified = json(&nodus(d, &["--json", "vault", "log", "verify"]));
    assert_eq!(verified["entries"], 1);
}

/// One bundle holding `n` copies of the patient: a long import.
fn big_bundle(first: usize, n: usize) -> Vec<u8> {
    let all = copies(count(None) * (first + n));
    let mut entries = Vec::new();
    for c in &all[first..first + n] {
        let b: Value = serde_json::from_slice(c).unwrap();
        entries.extend(b["entry"].as_array().unwrap().iter().cloned());
    }
    serde_json::to_vec(
        &serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
    )
    .unwrap()
}

#[test]
fn kill_9_during_imports_leaves_whole_bundles_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_at(d, "127.0.60.2");
    let per = count(None) * 40;
    let mut committed = 0;
    // The node is killed at a different moment of each import; whatever the moment,
    // the vault holds whole bundles, as many as its log says it imported. Last, it is
    // killed after the import was acknowledged: that bundle is kept.
    for (round, pause_ms) in [Some(0u64), Some(30), Some(80), Some(200), None]
        .into_iter()
        .enumerate()
    {
        let file = d.join(format!("big-{round}.json"));
        std::fs::write(&file, big_bundle(round * 40, 40)).unwrap();
        let mut node = up(d);
        let mut import = Command::new(BIN)
            .arg("--data-dir")
            .arg(d)
            .args(["vault", "import", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        match pause_ms {
            Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
            None => assert!(import.wait().unwrap().success()),
        }
        node.child.kill().unwrap();
        node.child.wait().unwrap();
        let _ = import.wait();
        let _node = up(d);
        let n = records(d);
        assert_eq!(
            n % per,
            0,
            "round {round}: {n} records, not whole bundles of {per}"
        );
        let imports = json(&nodus(d, &["--json", "vault", "log"]))
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["subtype"][0]["code"] == "import")
            .count();
        assert_eq!(n / per, imports, "round {round}");
        assert!(n / per >= committed);
        if pause_ms.is_none() {
            assert_eq!(n / per, committed + 1, "an acknowledged import was lost");
        }
        committed = n / per;
        ok(&nodus(d, &["vault", "log", "verify"]));
        // Every record kept opens.
        ok(&nodus(
            d,
            &[
                "vault",
                "export",
                "-o",
                d.join("check.json").to_str().unwrap(),
            ],
        ));
    }
}

fn peer_id(d: &Path) -> String {
    json(&nodus(d, &["--json", "vault", "id"]))["peer"]
        .as_str()
        .unwrap()
        .to_string()
}

fn replica_up_to_date(p: &Path) -> bool {
    let r = json(&nodus(p, &["--json", "vault", "replicas"]));
    r.as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(|x| x["behind"] == 0))
}

#[test]
fn a_replica_killed_loses_nothing_and_gives_a_lost_vault_back() {
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (p, r) = (pd.path(), rd.path());
    init_at(p, "127.0.61.1");
    init_at(r, "127.0.62.1");
    let mut patient = up(p);
    let mut replica = up(r);
    connect(p, r);
    let (pid, rid) = (peer_id(p), peer_id(r));
    // Not agreed to by the replica's operator yet: the patient is told why.
    ok(&nodus(p, &["vault", "replicas", "add", &rid]));
    let file = p.join("patient.json");
    std::fs::write(&file, PATIENT).unwrap();
    ok(&nodus(p, &["vault", "import", file.to_str().unwrap()]));
    wait_for("the replica's refusal to be shown", || {
        json(&nodus(p, &["--json", "vault", "replicas"]))[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("vault hold"))
    });
    ok(&nodus(r, &["vault", "hold", &pid]));
    wait_for("the replica to hold the vault", || replica_up_to_date(p));

    // The replica is killed while more comes in; back up, it catches up.
    let more = p.join("more.json");
    std::fs::write(&more, big_bundle(1, 20)).unwrap();
    let mut import = Command::new(BIN)
        .arg("--data-dir")
        .arg(p)
        .args(["vault", "import", more.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    replica.child.kill().unwrap();
    replica.child.wait().unwrap();
    assert!(import.wait().unwrap().success());
    let total = count(None) * 21;
    assert_eq!(records(p), total);
    let _replica = up(r);
    connect(p, r);
    wait_for("the restarted replica to catch up", || {
        replica_up_to_date(p)
    });
    let held = json(&nodus(r, &["--json", "vault", "holding"]));
    assert_eq!(held[0]["records"], total);
    assert_eq!(held[0]["patient"], pid.as_str());

    // The patient's vault file is lost (its keys are kept): taken back from the replica.
    let before = p.join("before.json");
    ok(&nodus(
        p,
        &["vault", "export", "-o", before.to_str().unwrap()],
    ));
    let log_before = json(&nodus(p, &["--json", "vault", "log", "--limit", "1000"]));
    patient.child.kill().unwrap();
    patient.child.wait().unwrap();
    std::fs::rename(p.join("vault/vault.redb"), p.join("lost.redb")).unwrap();
    let _patient = up(p);
    assert_eq!(records(p), 0);
    connect(p, r);
    let o = nodus(p, &["--json", "vault", "restore", "--from", &rid]);
    ok(&o);
    assert_eq!(json(&o)["records"], total);
    let after = p.join("after.json");
    ok(&nodus(
        p,
        &["vault", "export", "-o", after.to_str().unwrap()],
    ));
    assert_eq!(
        std::fs::read(&after).unwrap(),
        std::fs::read(&before).unwrap()
    );
    assert_eq!(
        json(&nodus(p, &["--json", "vault", "log", "--limit", "1000"])),
        log_before
    );
    ok(&nodus(p, &["vault", "log", "verify"]));
    // Into a vault that is not empty: refused, with what to do.
    fails_saying(
        &nodus(p, &["vault", "restore", "--from", &rid]),
        "not empty",
    );
}
