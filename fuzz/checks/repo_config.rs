//! Fuzz target `repo_config`: arbitrary text as a repository's `config` file (borg's INI
//! format), parsed by `rborg_repository::config::RepoConfig::parse` as `LocalRepository` opens
//! a repository.
//!
//! Property beyond "no panic": a parsed config written back (`to_ini`) parses to the same
//! typed settings. Regression test: `crates/repository/tests/fuzz_regressions.rs`.

use rborg_repository::config::RepoConfig;

fn typed(c: &RepoConfig) -> impl PartialEq + std::fmt::Debug {
    (
        c.version,
        c.segments_per_dir,
        c.max_segment_size,
        c.append_only,
        c.storage_quota,
        c.additional_free_space,
        c.id,
        c.key.clone(),
    )
}

/// One fuzz unit; whether the input was accepted (parsed, opened) by the loader.
pub fn run(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(config) = RepoConfig::parse(text) else {
        return false;
    };
    let _ = config.items();
    let written = config.to_ini();
    let again = RepoConfig::parse(&written)
        .unwrap_or_else(|e| panic!("re-parse of {written:?} failed: {e}"));
    assert_eq!(typed(&again), typed(&config), "{written:?}");
    true
}
