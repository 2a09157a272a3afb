//! Random and mutated YAML never makes the loader panic: every input gives a configuration
//! or an error.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rborg_config::load_config_str;

const PIECES: &[&str] = &[
    "a",
    ":",
    " ",
    "\n",
    "  ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    "\"",
    "&x ",
    "*x",
    "!include ",
    "!retain ",
    "!omit ",
    "<<: ",
    "#",
    "|",
    ">",
    "${",
    "}",
    "{n}",
    "\\",
    "---\n",
    "...\n",
    "?",
    "repositories",
    "path",
    "keep_daily",
    "7",
    "true",
    "~",
    "\t",
    "%YAML 1.2\n",
    "!!str ",
    "é",
];

fn check(text: &str, dir: &Path) {
    let env = |_: &str| None;
    let _ = load_config_str(text, &dir.join("fuzz.yaml"), Some(&env));
    let _ = load_config_str(text, &dir.join("fuzz.yaml"), None);
}

#[test]
fn random_yaml_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(0x5eed_c0f1);
    for _ in 0..3000 {
        let len = rng.gen_range(0..40);
        let text: String = (0..len)
            .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
            .collect();
        check(&text, dir.path());
    }
}

#[test]
fn mutated_corpus_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/config");
    let mut rng = StdRng::seed_from_u64(42);
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            texts.push(std::fs::read(&path).unwrap());
        }
    }
    for text in &texts {
        for _ in 0..40 {
            let mut bytes = text.clone();
            for _ in 0..rng.gen_range(1..6) {
                if bytes.is_empty() {
                    break;
                }
                let i = rng.gen_range(0..bytes.len());
                match rng.gen_range(0..3) {
                    0 => bytes[i] = rng.gen(),
                    1 => {
                        bytes.remove(i);
                    }
                    _ => bytes.insert(i, PIECES[rng.gen_range(0..PIECES.len())].as_bytes()[0]),
                }
            }
            // Includes stay relative to the corpus, so mutated includes are exercised too.
            let text = String::from_utf8_lossy(&bytes);
            let _ = load_config_str(&text, &corpus.join("mutated.yaml"), None);
            check(&text, dir.path());
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    check(&text, dir.path());
    let text = "- ".repeat(50_000);
    check(&text, dir.path());
}

#[test]
fn alias_bombs_are_an_error() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let err = load_config_str(&text, Path::new("/bomb.yaml"), None).unwrap_err();
    assert!(
        err.to_string().contains("aliases expand to more than"),
        "{err}"
    );
}
