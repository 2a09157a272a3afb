//! Validation errors: file, line and column of the offending key or value, borgmatic's
//! messages, "did you mean" suggestions, and all problems of a file at once.

use std::path::{Path, PathBuf};

use rborg_config::{load_config_str, load_config_with_env, ConfigError, Diagnostic};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/config")
        .join(name)
}

fn errors_of(name: &str) -> Vec<Diagnostic> {
    match load_config_with_env(&corpus(name), None) {
        Ok(_) => panic!("{name} should be invalid"),
        Err(e) => e.diagnostics().to_vec(),
    }
}

/// (file name, line, column, path, message) of each diagnostic.
fn table(diagnostics: &[Diagnostic]) -> Vec<(String, usize, usize, String, String)> {
    diagnostics
        .iter()
        .map(|d| {
            let mark = d.mark.clone().expect("a position");
            (
                mark.file
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                mark.line,
                mark.column,
                d.path.clone(),
                d.message.clone(),
            )
        })
        .collect()
}

fn row(
    file: &str,
    line: usize,
    column: usize,
    path: &str,
    message: &str,
) -> (String, usize, usize, String, String) {
    (file.into(), line, column, path.into(), message.into())
}

#[test]
fn unknown_options_suggest_the_nearest() {
    assert_eq!(
        table(&errors_of("invalid-typo.yaml")),
        [
            row("invalid-typo.yaml", 5, 1, "", "Additional properties are not allowed ('keep_dialy' was unexpected); did you mean 'keep_daily'?"),
            row("invalid-typo.yaml", 6, 1, "", "Additional properties are not allowed ('compresion' was unexpected); did you mean 'compression'?"),
        ]
    );
    let shown = errors_of("invalid-typo.yaml")[0].to_string();
    assert!(shown.ends_with("invalid-typo.yaml:5:1: At the top level: Additional properties are not allowed ('keep_dialy' was unexpected); did you mean 'keep_daily'?"), "{shown}");
}

#[test]
fn wrong_types_all_reported() {
    let f = "invalid-types.yaml";
    assert_eq!(
        table(&errors_of(f)),
        [
            row(f, 5, 14, "compression", "5 is not of type 'string'"),
            row(
                f,
                6,
                18,
                "one_file_system",
                "'yes' is not of type 'boolean'"
            ),
            row(f, 7, 13, "keep_daily", "'seven' is not of type 'integer'"),
            row(
                f,
                8,
                19,
                "exclude_patterns",
                "'/tmp' is not of type 'array'"
            ),
        ]
    );
}

#[test]
fn sectioned_errors_point_into_the_section() {
    let f = "invalid-sectioned-unknown.yaml";
    let t = table(&errors_of(f));
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!((t[0].1, t[0].2), (2, 5));
    assert!(
        t[0].4
            .contains("('source_directory' was unexpected); did you mean 'source_directories'?"),
        "{t:?}"
    );
    assert_eq!((t[1].1, t[1].2), (8, 5));
    assert!(
        t[1].4.contains("'keep_fortnightly' was unexpected"),
        "{t:?}"
    );
}

#[test]
fn per_repository_options_are_checked_as_top_level_options() {
    let f = "invalid-repository-override.yaml";
    assert_eq!(
        table(&errors_of(f)),
        [
            row(f, 5, 20, "repositories[0].remote_path", "5 is not of type 'string'"),
            row(f, 6, 7, "repositories[0]", "Additional properties are not allowed ('lock_wiat' was unexpected); did you mean 'lock_wait'?"),
        ]
    );
}

#[test]
fn enum_and_one_of_errors() {
    let t = table(&errors_of("invalid-checks-name.yaml"));
    assert!(t.iter().all(|r| r.1 >= 6), "{t:?}");
    assert!(
        t.iter()
            .any(|r| r.4.contains("is not valid under any of the given schemas")),
        "{t:?}"
    );
    assert!(
        t.iter()
            .any(|r| r.3 == "checks[0].name" && r.4.starts_with("'everything' is not one of [")),
        "{t:?}"
    );
    let t = table(&errors_of("invalid-commands.yaml"));
    assert!(
        t.iter()
            .any(|r| r.3 == "commands[0].before" && r.4.starts_with("'sometime' is not one of")),
        "{t:?}"
    );
}

#[test]
fn missing_required_and_empty_files() {
    let f = "invalid-missing-repositories.yaml";
    assert_eq!(
        table(&errors_of(f)),
        [row(f, 1, 1, "", "'repositories' is a required property")]
    );
    let f = "invalid-empty.yaml";
    let t = table(&errors_of(f));
    assert_eq!(t[0].4, "Configuration does not contain any options");
}

#[test]
fn include_errors() {
    let f = "invalid-include-missing.yaml";
    let t = table(&errors_of(f));
    assert_eq!((t[0].0.as_str(), t[0].1, t[0].2), (f, 1, 5));
    assert!(
        t[0].4
            .starts_with("Could not find include common/does-not-exist.yaml at "),
        "{t:?}"
    );

    let f = "invalid-merge-types.yaml";
    let t = table(&errors_of(f));
    assert_eq!((t[0].0.as_str(), t[0].1, t[0].2), (f, 4, 19));
    assert!(t[0]
        .4
        .contains("Incompatible types found when trying to merge \"exclude_patterns:\""));

    // A wrong value that comes from an included file is reported in that file.
    let dir = tempfile::tempdir().unwrap();
    let common = corpus("common/bad-types.yaml");
    let text = format!(
        "<<: !include {}\nsource_directories: [/a]\nrepositories:\n    - path: /r\n",
        common.display()
    );
    let err = load_config_str(&text, &dir.path().join("main.yaml"), None).unwrap_err();
    assert_eq!(
        table(err.diagnostics()),
        [row(
            "bad-types.yaml",
            1,
            19,
            "exclude_patterns",
            "'/var/tmp' is not of type 'array'"
        )]
    );
}

#[test]
fn tag_misuse() {
    let t = table(&errors_of("invalid-retain-without-merge.yaml"));
    assert_eq!((t[0].1, t[0].2), (1, 21));
    assert!(t[0].4.starts_with("The !retain tag may only be used within a configuration file containing a merged !include tag"));
    let t = table(&errors_of("invalid-omit-without-merge.yaml"));
    assert_eq!((t[0].1, t[0].2), (3, 7));
    assert!(t[0].4.starts_with("The !omit tag may only be used"));
    let err = load_config_str("a: !bogus 1\n", Path::new("/x.yaml"), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("could not determine a constructor for the tag '!bogus'"),
        "{err}"
    );
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    let t = table(&errors_of("invalid-yaml-syntax.yaml"));
    assert_eq!(t.len(), 1);
    assert!(t[0].4.starts_with("YAML syntax error"), "{t:?}");
    assert!(t[0].1 >= 3, "{t:?}");
    let err = load_config_str("a: 'unterminated\n", Path::new("/q.yaml"), None).unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!(
        d.mark.as_ref().unwrap().file.as_path(),
        Path::new("/q.yaml")
    );
}

#[test]
fn unset_environment_variable_is_an_error_when_used() {
    // `validate` (like `borgmatic config validate`) accepts it; a run does not.
    let file = corpus("valid-env-unset.yaml");
    assert!(load_config_with_env(&file, None).is_ok());
    let env = |_: &str| None;
    let err = load_config_with_env(&file, Some(&env)).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid(_)));
    assert_eq!(
        table(err.diagnostics()),
        [row(
            "valid-env-unset.yaml",
            5,
            7,
            "source_directories[0]",
            "Cannot find variable RBORG_TEST_UNSET in environment"
        )]
    );
}

#[test]
fn unreadable_file() {
    let err = load_config_with_env(Path::new("/nonexistent/rborg/config.yaml"), None).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err}");
}
