//! Include/merge, constants, environment and credential edge cases, each checked against
//! borgmatic's documented behaviour (and, for the corpus files, against borgmatic itself in
//! `corpus.rs`).

use std::path::Path;

use rborg_config::{
    load_config_str, load_config_with_env, resolve_credential, CredentialError, LoadedConfig,
};
use serde_json::json;

const BASE: &str = "source_directories: [/a]\nrepositories:\n    - path: /r\n";

fn load_in(dir: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> LoadedConfig {
    match load_config_str(text, &dir.join("config.yaml"), Some(env)) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn merge_precedence_and_list_concatenation() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", "keep_daily: 1\nkeep_weekly: 1\nexclude_patterns: [a1, a2]\nhealthchecks: {ping_url: A, send_logs: true}\n");
    write(
        dir.path(),
        "b.yaml",
        "keep_daily: 2\nexclude_patterns: [b1]\nhealthchecks: {ping_url: B}\n",
    );
    let text = format!(
        "<<: !include [a.yaml, b.yaml]\n{BASE}keep_weekly: 9\nexclude_patterns: [own, !omit a2]\n"
    );
    let l = load_in(dir.path(), &text, &no_env);
    let t = l.tree.to_json();
    assert_eq!(t["keep_daily"], 2, "the later include wins");
    assert_eq!(t["keep_weekly"], 9, "the including file wins");
    assert_eq!(
        t["exclude_patterns"],
        json!(["a1", "b1", "own"]),
        "lists concatenate, !omit removes"
    );
    assert_eq!(
        t["healthchecks"],
        json!({"ping_url": "B", "send_logs": true}),
        "mappings deep merge"
    );
    assert_eq!(l.files.len(), 2, "{:?}", l.files);
}

#[test]
fn retain_stops_the_deep_merge() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        "healthchecks: {ping_url: A, send_logs: true}\nexclude_patterns: [a]\n",
    );
    let text = format!("<<: !include a.yaml\n{BASE}healthchecks: !retain {{ping_url: own}}\nexclude_patterns: !retain [own]\n");
    let t = load_in(dir.path(), &text, &no_env).tree.to_json();
    assert_eq!(t["healthchecks"], json!({"ping_url": "own"}));
    assert_eq!(t["exclude_patterns"], json!(["own"]));
}

#[test]
fn yaml_merge_of_anchors_earlier_wins() {
    let text = format!("{BASE}x1: &one {{keep_daily: 1, keep_weekly: 1}}\n");
    // Anchors merged with a list: the earlier mapping wins (YAML merge key rules).
    let yaml = "a: &a {keep_daily: 1, keep_hourly: 1}\nb: &b {keep_daily: 2, keep_weekly: 2}\n";
    let merged = format!("{yaml}c:\n    <<: [*a, *b]\n    keep_hourly: 5\n");
    let node = rborg_config::load::load_str(&merged, Path::new("/m.yaml"), &mut Default::default())
        .unwrap();
    assert_eq!(
        node.get("c").unwrap().to_json(),
        json!({"keep_daily": 1, "keep_weekly": 2, "keep_hourly": 5})
    );
    // An unknown top-level option is still reported after merging.
    let dir = tempfile::tempdir().unwrap();
    assert!(load_config_str(&text, &dir.path().join("c.yaml"), None).is_err());
}

#[test]
fn nested_and_relative_includes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    // sub/outer.yaml includes inner.yaml relative to itself (sub/), not to the main file.
    write(
        dir.path(),
        "sub/outer.yaml",
        "<<: !include inner.yaml\nkeep_daily: 3\n",
    );
    write(
        dir.path(),
        "sub/inner.yaml",
        "keep_daily: 1\nkeep_monthly: 6\n",
    );
    let text = format!("<<: !include sub/outer.yaml\n{BASE}");
    let t = load_in(dir.path(), &text, &no_env).tree.to_json();
    assert_eq!(
        (t["keep_daily"].clone(), t["keep_monthly"].clone()),
        (json!(3), json!(6))
    );
}

#[test]
fn include_cycle_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "loop.yaml",
        "<<: !include loop.yaml\nkeep_daily: 1\n",
    );
    let err = load_config_with_env(&dir.path().join("loop.yaml"), None).unwrap_err();
    assert!(err.to_string().contains("include cycle"), "{err}");
}

#[test]
fn constants_types_quoting_and_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let text = "constants:\n    n: 7\n    name: it's me\n    flag: true\n\
source_directories: ['/srv/{name}']\nrepositories:\n    - path: /r/{n}\n\
keep_daily: '{n}'\none_file_system: '{flag}'\narchive_name_format: '\\{hostname\\}-{unknown}'\n\
before_backup: ['echo {name}']\ncommands:\n    - before: action\n      run: ['echo {name} \\{repository\\}']\n";
    let l = load_in(dir.path(), text, &no_env);
    let c = &l.config;
    assert_eq!(c.source_directories, ["/srv/it's me"]);
    assert_eq!(c.repositories[0].path, "/r/7");
    assert_eq!(c.keep_daily, Some(7), "a constant fills an integer option");
    assert_eq!(c.one_file_system, Some(true), "and a boolean one");
    assert_eq!(
        c.archive_name_format.as_deref(),
        Some("{hostname}-{unknown}")
    );
    // Hook values are shell-quoted; escaped braces stay escaped for the hook's own variables.
    assert_eq!(c.commands[0].run, ["echo 'it'\"'\"'s me' \\{repository\\}"]);
    assert_eq!(c.commands[1].run, ["echo 'it'\"'\"'s me'"]);
}

#[test]
fn environment_forms() {
    let dir = tempfile::tempdir().unwrap();
    let env = |name: &str| match name {
        "HOSTNAME_X" => Some("web1".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let text = "source_directories: ['/h/${HOSTNAME_X}', '${NOPE:-/d}', '${NOPE-/e}', '\\${HOSTNAME_X}', '[${EMPTY}]', '$HOSTNAME_X']\n\
repositories:\n    - path: /r\n";
    let c = load_in(dir.path(), text, &env).config;
    assert_eq!(
        c.source_directories,
        ["/h/web1", "/d", "/e", "${HOSTNAME_X}", "[]", "$HOSTNAME_X"]
    );
}

#[test]
fn constants_before_environment() {
    // borgmatic applies constants first, so a constant may expand to a ${VAR} reference.
    let dir = tempfile::tempdir().unwrap();
    let env = |name: &str| (name == "BK_ROOT").then(|| "/backup".to_string());
    let text = "constants:\n    root: ${BK_ROOT}\nsource_directories: [/a]\nrepositories:\n    - path: '{root}/repo'\n";
    let c = load_in(dir.path(), text, &env).config;
    assert_eq!(c.repositories[0].path, "/backup/repo");
}

#[test]
fn credentials() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pass", "s3cret\n");
    let env =
        |name: &str| (name == "CREDENTIALS_DIRECTORY").then(|| dir.path().display().to_string());
    let wd = dir.path().to_str();
    assert_eq!(
        resolve_credential("{credential file pass}", wd, &env).unwrap(),
        "s3cret"
    );
    let abs = format!("{{credential file {}}}", dir.path().join("pass").display());
    assert_eq!(resolve_credential(&abs, None, &env).unwrap(), "s3cret");
    assert_eq!(
        resolve_credential("{credential systemd pass}", None, &env).unwrap(),
        "s3cret"
    );
    assert_eq!(
        resolve_credential("plain text", None, &env).unwrap(),
        "plain text"
    );
    assert!(matches!(
        resolve_credential("{credential systemd ../x}", None, &env),
        Err(CredentialError::InvalidName(_))
    ));
    assert!(matches!(
        resolve_credential("{credential file}", None, &env),
        Err(CredentialError::Syntax(_))
    ));
    assert!(matches!(
        resolve_credential("{credential keepassxc a b}", None, &env),
        Err(CredentialError::Syntax(_))
    ));
    assert!(matches!(
        resolve_credential("{credential container x}", None, &env),
        Err(CredentialError::Unsupported(_))
    ));
    assert!(matches!(
        resolve_credential("{credential file missing}", wd, &env),
        Err(CredentialError::Io { .. })
    ));
    let none = |_: &str| None;
    assert!(matches!(
        resolve_credential("{credential systemd pass}", None, &none),
        Err(CredentialError::NoCredentialsDirectory(_))
    ));
}

#[test]
fn normalisation_of_deprecated_forms() {
    let dir = tempfile::tempdir().unwrap();
    let text = "location:\n    source_directories: [/a]\n    repositories: ['me@host:repo', 'me@host:/abs', 'me@host:~/home']\n\
storage:\n    numeric_owner: true\nhooks:\n    pagerduty: key123\n    after_everything: [echo end]\n";
    let l = load_in(dir.path(), text, &no_env);
    let paths: Vec<&str> = l
        .config
        .repositories
        .iter()
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "ssh://me@host/./repo",
            "ssh://me@host/abs",
            "ssh://me@host/~/home"
        ]
    );
    assert_eq!(l.config.numeric_ids, Some(true));
    assert_eq!(
        l.config.pagerduty.as_ref().unwrap().integration_key,
        "key123"
    );
    assert_eq!(l.config.commands[0].after.as_deref(), Some("everything"));
    assert!(l.warnings.len() >= 5, "{:?}", l.warnings);
    assert!(l
        .warnings
        .iter()
        .all(|w| w.starts_with(&dir.path().join("config.yaml").display().to_string())));
}

#[test]
fn per_repository_configuration_and_selection() {
    let dir = tempfile::tempdir().unwrap();
    let text = concat!(
        "source_directories: [/a]\nremote_path: borg\nrepositories:\n",
        "    - path: ssh://u@host/./one\n      label: offsite\n      remote_path: /opt/borg\n",
        "    - path: /var/backups/local.borg\n      label: local\n",
    );
    let l = load_in(dir.path(), text, &no_env);
    let first = l.for_repository(0).unwrap();
    assert_eq!(first.remote_path.as_deref(), Some("/opt/borg"));
    assert_eq!(
        first.repositories.len(),
        2,
        "repository fields stay as they are"
    );
    assert_eq!(
        l.for_repository(1).unwrap().remote_path.as_deref(),
        Some("borg")
    );
    assert!(l.for_repository(2).is_none());
    assert_eq!(l.select_repositories("offsite"), [0]);
    assert_eq!(l.select_repositories("/var/backups/local.borg"), [1]);
    assert_eq!(l.select_repositories("/var/backups/*"), [1]);
    assert_eq!(l.select_repositories("*"), [0, 1]);
    assert!(l.select_repositories("nothing").is_empty());
}
