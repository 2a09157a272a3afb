//! Fuzz target `segment`: arbitrary bytes as segment file 1 of a repository, read the way
//! `LocalRepository` and `borg check` read segments (`rborg_repository::segment::LoggedIO`):
//! the magic, every entry with and without its data (crc checked or not), each PUT again by
//! its offset (`read`/`read_size`), and `recover_segment` (`check --repair`).
//!
//! Properties beyond "no panic": the header-only walk (no crc) sees every entry the checked
//! walk sees, at the same offsets; a PUT found by the walk reads back with the same data at
//! its offset; recovering a recovered segment changes nothing.
//!
//! The file lives under `$RBORG_FUZZ_DIR` (set by `fuzz/run`, a tmpfs directory), else
//! `$TMPDIR/rborg-fuzz-<pid>`. Regression test: `crates/repository/tests/fuzz_regressions.rs`.

use std::path::Path;

use rborg_repository::segment::{LoggedIO, SegmentEntry};

/// The entries of segment 1 up to the first error, and whether there was none.
fn walk(io: &mut LoggedIO, include_data: bool, read_data: bool) -> (Vec<SegmentEntry>, bool) {
    let mut out = Vec::new();
    let Ok(iter) = io.iter_objects(1, 0, include_data, read_data) else {
        return (out, false);
    };
    for entry in iter {
        match entry {
            Ok(e) => out.push(e),
            Err(_) => return (out, false),
        }
    }
    (out, true)
}

/// One fuzz unit (`dir`: a scratch directory of its own); whether the input was accepted
/// (parsed, opened) by the loader.
pub fn run(data: &[u8], dir: &Path) -> bool {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("data/0")).expect("segment directory");
    let file = repo.join("data/0/1");
    std::fs::write(&file, data).expect("write segment");
    let mut io = LoggedIO::new(&repo, 1 << 20, 1000);
    let _ = io.get_segment_magic(1);
    let _ = io.is_committed_segment(1);
    let (checked, clean) = walk(&mut io, true, true);
    let (quick, _) = walk(&mut io, false, false);
    assert!(quick.len() >= checked.len(), "{quick:?} vs {checked:?}");
    for (q, c) in quick.iter().zip(&checked) {
        assert_eq!(
            (q.tag, q.key, q.offset, q.size),
            (c.tag, c.key, c.offset, c.size)
        );
    }
    for e in &checked {
        if let Some(put) = &e.data {
            let got = io.read(1, e.offset, &e.key).expect("read a walked PUT");
            assert_eq!(&got, put);
            let size = io
                .read_size(1, e.offset, &e.key)
                .expect("size of a walked PUT");
            assert_eq!(size, e.size);
        }
    }
    if io.recover_segment(1, &file).is_ok() {
        let once = std::fs::read(&file).expect("recovered segment");
        io.recover_segment(1, &file).expect("recover again");
        assert_eq!(std::fs::read(&file).expect("recovered twice"), once);
    }
    drop(io);
    let _ = std::fs::remove_file(&file);
    clean && !checked.is_empty()
}
