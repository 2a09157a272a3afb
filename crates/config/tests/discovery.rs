//! Configuration discovery as borgmatic's `config/collect.py`.

use std::path::PathBuf;

use rborg_config::{collect_config_files, config_files, default_config_paths};

#[test]
fn default_paths_follow_xdg() {
    let env = |name: &str| match name {
        "HOME" => Some("/home/u".to_string()),
        _ => None,
    };
    assert_eq!(
        default_config_paths(&env),
        [
            PathBuf::from("/etc/borgmatic/config.yaml"),
            PathBuf::from("/etc/borgmatic.d"),
            PathBuf::from("/home/u/.config/borgmatic/config.yaml"),
            PathBuf::from("/home/u/.config/borgmatic.d"),
        ]
    );
    let xdg = |name: &str| match name {
        "HOME" => Some("/home/u".to_string()),
        "XDG_CONFIG_HOME" => Some("/xdg".to_string()),
        _ => None,
    };
    assert_eq!(
        default_config_paths(&xdg)[2],
        PathBuf::from("/xdg/borgmatic/config.yaml")
    );
}

#[test]
fn directories_expand_to_sorted_yaml_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("borgmatic.d");
    std::fs::create_dir(&d).unwrap();
    for name in ["b.yaml", "a.yml", "notes.txt", "c.yaml"] {
        std::fs::write(d.join(name), "").unwrap();
    }
    std::fs::create_dir(d.join("sub.yaml")).unwrap();
    let missing = dir.path().join("missing.yaml");
    let files = collect_config_files(&[d.clone(), missing.clone()], true);
    assert_eq!(
        files,
        [
            d.join("a.yml"),
            d.join("b.yaml"),
            d.join("c.yaml"),
            missing.clone()
        ]
    );
    // Defaults that do not exist are skipped; explicit ones are kept so the run reports them.
    assert!(!collect_config_files(std::slice::from_ref(&missing), false).contains(&missing));

    // Without -c: the user's XDG config directory is searched.
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("borgmatic")).unwrap();
    std::fs::write(xdg.join("borgmatic/config.yaml"), "").unwrap();
    let x = xdg.display().to_string();
    let env = move |name: &str| (name == "XDG_CONFIG_HOME").then(|| x.clone());
    let found = config_files(&[], &env);
    assert!(
        found.contains(&xdg.join("borgmatic/config.yaml")),
        "{found:?}"
    );
    assert_eq!(config_files(std::slice::from_ref(&d), &env).len(), 3);
}
