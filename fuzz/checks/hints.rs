//! Fuzz target `hints`: arbitrary bytes as a `hints.N` file (msgpack, versions 1 and 2),
//! decoded by `rborg_repository::hints::Hints::parse` as `LocalRepository` does.
//!
//! Property beyond "no panic": decoded hints written back (`to_bytes`, always version 2) decode
//! to the same hints. Regression test: `crates/repository/tests/fuzz_regressions.rs`.

use rborg_repository::hints::Hints;

/// One fuzz unit; whether the input was accepted (parsed, opened) by the loader.
pub fn run(data: &[u8]) -> bool {
    let Ok(parsed) = Hints::parse(data) else {
        return false;
    };
    let saved = parsed.hints.to_bytes();
    let again = Hints::parse(&saved).expect("re-read written hints");
    assert_eq!(again.version, 2);
    assert_eq!(again.hints, parsed.hints);
    true
}
