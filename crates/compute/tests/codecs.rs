//! Every decoder of peer input in this crate, run through the oracle its fuzz target
//! uses: on random bytes (proptest) and on the corpus the fuzzers keep in the repo
//! (`fuzz/corpus/<target>/`); and real messages, cut short, refused.

#[path = "oracle/compute_wire.rs"]
mod compute_wire;

#[path = "../../../fuzz/replay.rs"]
mod replay;

use nodus_compute::sandbox::{Failure, Job, Output};
use nodus_compute::wire::{
    Announce, Assignment, Reply, Request, Returned, decode_reply, decode_request, encode,
};
use proptest::prelude::*;

#[test]
fn the_kept_corpus_passes_every_oracle() {
    replay::replay(&[("compute_wire", compute_wire::check as fn(&[u8]))]);
}

fn samples() -> (Vec<Request>, Vec<Reply>) {
    let job = Job {
        args: vec!["7".into(), "100".into()],
        stdin: b"in".to_vec(),
        files: vec![("a.txt".into(), b"abc".to_vec())],
        seed: [3; 32],
    };
    let requests = vec![
        Request::Projects,
        Request::Module { project: [1; 16] },
        Request::Work {
            project: [1; 16],
            max: 8,
            class: "x86_64-wasmtime48".into(),
            payout: Some([7; 20]),
        },
        Request::Submit {
            project: [1; 16],
            results: vec![
                Returned {
                    unit: 3,
                    replica: 1,
                    fuel: 12345,
                    result: Ok(Output {
                        exit_code: 0,
                        stdout: b"3 17\n".to_vec(),
                        files: vec![("o".into(), vec![1, 2])],
                    }),
                },
                Returned {
                    unit: 4,
                    replica: 0,
                    fuel: 99,
                    result: Err(Failure::OutOfFuel),
                },
            ],
        },
    ];
    let replies = vec![
        Reply::Projects(vec![Announce {
            project: [2; 16],
            name: "primes".into(),
            module: [9; 32],
            module_len: 300,
            fuel: 1_000_000,
            memory_mb: 16,
            output_bytes: 1024,
            deadline_secs: 600,
            units: 200,
            open: 150,
            canonical_nans: false,
        }]),
        Reply::Module {
            wasm: b"\0asm\x01\0\0\0".to_vec(),
        },
        Reply::Units {
            units: vec![Assignment {
                unit: 1,
                replica: 0,
                job,
            }],
            credit: 5,
        },
        Reply::NoWork {
            finished: true,
            credit: 0,
        },
        Reply::Accepted { credit: 77 },
        Reply::Refused(nodus_compute::wire::Refusal::Busy),
    ];
    (requests, replies)
}

#[test]
fn real_messages_round_trip_and_cut_short_are_refused() {
    let (requests, replies) = samples();
    for r in requests {
        let b = encode(&r);
        compute_wire::check(&b);
        assert_eq!(decode_request(&b).unwrap(), r);
        assert!(decode_request(&b[..b.len() - 1]).is_err() || b.len() == 1);
    }
    for r in replies {
        let b = encode(&r);
        compute_wire::check(&b);
        assert_eq!(decode_reply(&b).unwrap(), r);
    }
}

/// Writes the samples as fuzz seeds: `NODUS_WRITE_SEEDS=1 cargo test -p nodus-compute --test codecs`.
#[test]
fn write_seeds() {
    if std::env::var_os("NODUS_WRITE_SEEDS").is_none() {
        return;
    }
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/compute_wire");
    std::fs::create_dir_all(&dir).unwrap();
    let (requests, replies) = samples();
    let all: Vec<Vec<u8>> = requests
        .iter()
        .map(encode)
        .chain(replies.iter().map(encode))
        .collect();
    for (i, b) in all.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), b).unwrap();
    }
}

proptest! {
    #[test]
    fn compute_wire_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        compute_wire::check(&data);
    }
}
