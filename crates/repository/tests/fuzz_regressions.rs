//! Replays the committed inputs of this crate's fuzz targets (`fuzz/`, see
//! `docs/reliability.md`): real borg 1.2.4 segment, index, hints, integrity and config files, and
//! every input that once crashed a target. Each goes through the target's own check
//! (`fuzz/checks/<target>.rs`: the public loaders plus the round-trip properties), so a finding
//! stays fixed.

#[path = "../../../fuzz/checks/hints.rs"]
mod hints;
#[path = "../../../fuzz/checks/index.rs"]
mod index;
#[path = "../../../fuzz/checks/index_files.rs"]
mod index_files;
#[path = "../../../fuzz/checks/replay.rs"]
mod replay;
#[path = "../../../fuzz/checks/repo_config.rs"]
mod repo_config;
#[path = "../../../fuzz/checks/segment.rs"]
mod segment;

#[test]
fn segment_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let results = replay::replay("segment", |data| segment::run(data, dir.path()));
    replay::assert_seeds("segment", &results, &[]);
}

#[test]
fn index_inputs() {
    let results = replay::replay("index", index::run);
    replay::assert_seeds("index", &results, &[]);
}

#[test]
fn hints_inputs() {
    let results = replay::replay("hints", hints::run);
    replay::assert_seeds("hints", &results, &[]);
}

#[test]
fn index_files_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let results = replay::replay("index_files", |data| index_files::run(data, dir.path()));
    replay::assert_seeds("index_files", &results, &[]);
}

#[test]
fn repo_config_inputs() {
    let results = replay::replay("repo_config", repo_config::run);
    replay::assert_seeds("repo_config", &results, &[]);
}
