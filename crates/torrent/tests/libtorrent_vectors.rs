//! The metainfo parser agrees with libtorrent on every one of libtorrent's own test
//! torrents: it loads what libtorrent loads and refuses what libtorrent refuses, for the
//! same reason, and never panics.

use std::path::PathBuf;

use nodus_torrent::metainfo::Metainfo;

fn vectors() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.join("tests/vectors/libtorrent-test-torrents")
}

#[test]
fn agrees_with_libtorrent_on_every_test_torrent() {
    let dir = vectors();
    let expected = std::fs::read_to_string(dir.join("EXPECTED.tsv")).expect("EXPECTED.tsv");
    let mut disagreements = Vec::new();
    let mut rows = 0;
    for line in expected.lines().skip(1) {
        let Some((file, want)) = line.split_once('\t') else {
            continue;
        };
        rows += 1;
        let data = std::fs::read(dir.join(file)).expect(file);
        let got = match Metainfo::from_bytes(&data) {
            Ok(_) => "loads".to_string(),
            Err(e) => format!("rejected ({})", e.libtorrent_code()),
        };
        if got != want {
            disagreements.push(format!("{file}: libtorrent {want}, nodus {got}"));
        }
    }
    assert_eq!(rows, 104, "EXPECTED.tsv rows");
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn sanitized_paths_stay_inside_the_download_dir() {
    for name in [
        "parent_path.torrent",
        "absolute_filename.torrent",
        "slash_path3.torrent",
        "invalid_name2.torrent",
        "backslash_path.torrent",
    ] {
        let data = std::fs::read(vectors().join(name)).unwrap();
        let m = Metainfo::from_bytes(&data).unwrap();
        for f in &m.info.files {
            for c in &f.path {
                assert!(
                    !c.is_empty() && c != "." && c != ".." && !c.contains('/') && !c.contains('\\'),
                    "{name}: {:?}",
                    f.path
                );
            }
        }
    }
}

#[test]
fn v2_and_hybrid_layouts_align_files_to_pieces() {
    let data = std::fs::read(vectors().join("v2_hybrid.torrent")).unwrap();
    let m = Metainfo::from_bytes(&data).unwrap();
    assert!(m.hashes.v1.is_some() && m.hashes.v2.is_some());
    for f in m.info.files.iter().filter(|f| !f.pad) {
        assert_eq!(f.offset % m.info.piece_length, 0, "{:?}", f.path);
        assert!(f.pieces_root.is_some() || f.length == 0);
    }
    let v2 =
        Metainfo::from_bytes(&std::fs::read(vectors().join("v2_multiple_files.torrent")).unwrap())
            .unwrap();
    assert!(v2.hashes.v1.is_none() && v2.hashes.v2.is_some());
    assert_eq!(v2.info.total_length, v2.info.files.last().unwrap().end());
}
