//! Replays the corpus the fuzzers keep (`fuzz/corpus/<target>/`) through the targets'
//! oracles in the ordinary test suite. Included by each crate's `tests/codecs.rs`.

use std::path::{Path, PathBuf};

/// The inputs kept for `target`, sorted so a failure names the same file every run.
pub fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("corpus file");
            (p, bytes)
        })
        .collect()
}

/// A fuzz target's name and its oracle.
pub type Target<'a> = (&'a str, fn(&[u8]));

/// Runs every kept input of each target through its oracle; names the file that fails.
pub fn replay(targets: &[Target<'_>]) {
    for (target, check) in targets {
        let inputs = corpus(target);
        assert!(
            !inputs.is_empty(),
            "fuzz/corpus/{target} is empty: run scripts/fuzz to seed it"
        );
        for (path, bytes) in inputs {
            let r = std::panic::catch_unwind(|| check(&bytes));
            assert!(r.is_ok(), "{} fails its oracle", path.display());
        }
    }
}
