//! `generate_template()`: parses, validates, lists every option of the schema, and borgmatic
//! accepts it.

use std::path::Path;
use std::process::Command;

use rborg_config::{generate_template, load_config_str, schema};

#[test]
fn template_validates_and_lists_every_option() {
    let text = generate_template();
    let dir = tempfile::tempdir().unwrap();
    let loaded = load_config_str(&text, &dir.path().join("template.yaml"), None)
        .unwrap_or_else(|e| panic!("the template must validate: {e}\n{text}"));
    assert!(!loaded.config.repositories.is_empty());
    assert!(!loaded.config.source_directories.is_empty());
    let options = schema::top_level_options();
    assert!(options.len() >= 130, "{}", options.len());
    for option in options {
        let active = text.lines().any(|l| l.starts_with(&format!("{option}:")));
        let commented = text.lines().any(|l| l.starts_with(&format!("# {option}:")));
        assert!(active || commented, "{option} missing from the template");
    }
    // Uncommenting an optional scalar option gives a valid configuration too.
    let uncommented = text.replace("# keep_daily: ", "keep_daily: ");
    assert!(
        load_config_str(&uncommented, &dir.path().join("t2.yaml"), None)
            .unwrap()
            .config
            .keep_daily
            .is_some()
    );
}

#[test]
fn borgmatic_accepts_the_template() {
    let borgmatic = Path::new("/var/tmp/bm/bin/borgmatic");
    if !borgmatic.exists() {
        assert!(
            std::env::var("RBORG_REQUIRE_BORG").as_deref() != Ok("1"),
            "RBORG_REQUIRE_BORG=1 but {} is missing",
            borgmatic.display()
        );
        eprintln!("borgmatic 2.x is not installed in /var/tmp/bm: skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("template.yaml");
    std::fs::write(&file, generate_template()).unwrap();
    let out = Command::new(borgmatic)
        .args(["config", "validate", "-c"])
        .arg(&file)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
