//! Fuzz target `config_yaml`: arbitrary text as a borgmatic configuration file, loaded by
//! `rborg_config::load_config_str` (YAML parsing, `!include`/`!retain`/`!omit` and `<<` merges,
//! `${VAR}` interpolation, schema validation, the `Config` model), with and without an
//! environment, as `rborg` loads `-c` files. The text is loaded as if it were a file of `dir`,
//! `testdata/config/` (never written), so `!include common/...` reaches real files. In the
//! environment every variable is set except those whose name contains `UNSET` (the convention
//! of `testdata/config/valid-env*.yaml`).
//!
//! Seeds: the configurations under `testdata/config/` (copied by `testdata/fuzz/make_seeds.py`).
//! The property-style test `crates/config/tests/fuzz.rs` runs without libFuzzer; this target is
//! the coverage-guided one. Regression test: `crates/config/tests/fuzz_regressions.rs`.

use std::path::Path;

use rborg_config::load_config_str;

/// One fuzz unit (`dir`: the directory the text is loaded from); whether the input was
/// accepted by the loader as `config validate` loads (no interpolation).
pub fn run(data: &[u8], dir: &Path) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let path = dir.join("fuzz-input.yaml");
    let env = |name: &str| (!name.contains("UNSET")).then(|| format!("value-of-{name}"));
    let _ = load_config_str(text, &path, Some(&env));
    // `None`: no interpolation, as `config validate` loads
    load_config_str(text, &path, None).is_ok()
}
