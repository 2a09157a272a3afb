//! Replays the committed inputs of the `config_yaml` fuzz target (`fuzz/`, see
//! `docs/reliability.md`): the configurations of `testdata/config/` and every input that once
//! crashed the target, through the target's own check (`fuzz/checks/config_yaml.rs`). The
//! property-style `tests/fuzz.rs` generates its own inputs; this one keeps libFuzzer's findings.

#[path = "../../../fuzz/checks/config_yaml.rs"]
mod config_yaml;
#[path = "../../../fuzz/checks/replay.rs"]
mod replay;

#[test]
fn config_yaml_inputs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/config");
    let results = replay::replay("config_yaml", |data| config_yaml::run(data, &dir));
    // the `invalid-*` configurations of testdata/config/ are there to be refused
    let invalid: Vec<&str> = results
        .iter()
        .filter_map(|(name, _)| name.strip_prefix("seeds/"))
        .filter(|name| name.starts_with("invalid-"))
        .collect();
    assert!(!invalid.is_empty());
    replay::assert_seeds("config_yaml", &results, &invalid);
}
