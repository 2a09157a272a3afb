//! A configuration file that holds a literal encryption passphrase and that other users can
//! read gets a warning naming the file and the fix; a private file, a passphrase taken from the
//! environment or a credential, and a readable file without a passphrase get none.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const BASE: &str = "source_directories: [/a]\nrepositories:\n    - path: /r\n";

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn warnings(path: &Path) -> Vec<String> {
    let env = |name: &str| (name == "PASS").then(|| "from-env".to_string());
    rborg_config::load_config_with_env(path, Some(&env))
        .unwrap()
        .warnings
}

fn secret_warnings(path: &Path) -> Vec<String> {
    warnings(path)
        .into_iter()
        .filter(|w| w.contains("encryption passphrase"))
        .collect()
}

#[test]
fn a_readable_file_with_a_passphrase_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let with_secret = format!("{BASE}encryption_passphrase: hunter2\n");

    write(&config, &with_secret, 0o644);
    let found = secret_warnings(&config);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains(&format!("chmod 600 {}", config.display())),
        "{}",
        found[0]
    );
    assert!(found[0].contains("0644"), "{}", found[0]);
    assert!(
        !found[0].contains("hunter2"),
        "the warning shows the passphrase: {}",
        found[0]
    );

    write(&config, &with_secret, 0o640);
    assert_eq!(secret_warnings(&config).len(), 1, "group-readable");

    write(&config, &with_secret, 0o600);
    assert!(secret_warnings(&config).is_empty());

    for indirect in ["${PASS}", "\"{credential file /run/secret}\""] {
        write(
            &config,
            &format!("{BASE}encryption_passphrase: {indirect}\n"),
            0o644,
        );
        assert!(secret_warnings(&config).is_empty(), "{indirect}");
    }

    write(&config, BASE, 0o644);
    assert!(secret_warnings(&config).is_empty(), "no passphrase");
}

#[test]
fn the_warning_names_the_included_file_that_holds_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.yaml");
    let config = dir.path().join("config.yaml");
    write(&secret, "encryption_passphrase: hunter2\n", 0o644);
    write(
        &config,
        &format!("<<: !include {}\n{BASE}", secret.display()),
        0o600,
    );
    let found = secret_warnings(&config);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(&secret.display().to_string()),
        "{}",
        found[0]
    );

    write(&secret, "encryption_passphrase: hunter2\n", 0o600);
    assert!(secret_warnings(&config).is_empty());
}
