//! `rborg config validate|generate` (the built binary) against borgmatic itself.
//!
//! The configurations are `testdata/config/*.yaml` (file names say the expected verdict),
//! `docs/examples/webserver.yaml` and a template written by `rborg config generate`. Each
//! validator runs once over all of them (borgmatic's start-up costs ~0.6 s): a file's verdict is
//! whether the run printed `FILE: Error parsing configuration file`, the line both borgmatic
//! 2.x and 1.7 print for every rejected file. borgmatic 2.x comes from the venv in
//! `/var/tmp/bm`, 1.7 from Debian (`/usr/bin/validate-borgmatic-config`); without them their
//! half is skipped with a notice, unless `RBORG_REQUIRE_BORG=1`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BORGMATIC: &str = "/var/tmp/bm/bin/borgmatic";
const BORGMATIC_17_VALIDATOR: &str = "/usr/bin/validate-borgmatic-config";
const RBORG: &str = env!("CARGO_BIN_EXE_rborg");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn corpus_dir() -> PathBuf {
    root().join("testdata/config")
}

fn webserver() -> PathBuf {
    root().join("docs/examples/webserver.yaml")
}

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "only {} configurations", files.len());
    files
}

fn expected_valid(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(
        name.starts_with("valid-") || name.starts_with("invalid-"),
        "{name}"
    );
    name.starts_with("valid-")
}

fn available(program: &str, what: &str) -> bool {
    let present = Path::new(program).exists();
    if !present {
        assert!(
            std::env::var("RBORG_REQUIRE_BORG").as_deref() != Ok("1"),
            "RBORG_REQUIRE_BORG=1 but {program} ({what}) is missing"
        );
        eprintln!("{what} is not installed ({program}): skipping the comparison with it");
    }
    present
}

/// Runs `program args` from the corpus directory (includes fall back to the current
/// directory) with an empty home, so no user configuration or state is involved.
fn run(program: &str, args: &[&str], files: &[PathBuf], home: &Path) -> Output {
    let mut command = Command::new(program);
    command.args(args);
    for file in files {
        command.arg("-c").arg(file);
    }
    command
        .current_dir(corpus_dir())
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Each file's verdict (true: valid) from one run over all of them, read from the
/// `FILE: Error parsing configuration file` lines. A run that crashes (borgmatic 2.1.10 raises
/// `AttributeError` on an empty file) says nothing about the other files, so the batch is
/// split until the crash is isolated; a file that crashes the validator on its own is invalid
/// for it (it exits with 1).
fn verdicts(files: &[PathBuf], runner: &dyn Fn(&[PathBuf]) -> Output) -> BTreeMap<PathBuf, bool> {
    let out = runner(files);
    let all = text(&out);
    if all.contains("Traceback (most recent call last)") {
        if files.len() == 1 {
            assert!(!out.status.success());
            return BTreeMap::from([(files[0].clone(), false)]);
        }
        let (a, b) = files.split_at(files.len() / 2);
        let mut result = verdicts(a, runner);
        result.extend(verdicts(b, runner));
        return result;
    }
    let result: BTreeMap<PathBuf, bool> = files
        .iter()
        .map(|f| {
            let marker = format!("{}: Error parsing configuration file", f.display());
            (f.clone(), !all.lines().any(|l| l == marker))
        })
        .collect();
    assert_eq!(
        out.status.success(),
        result.values().all(|v| *v),
        "exit status and per-file verdicts disagree:\n{all}"
    );
    result
}

/// Writes the template with `rborg config generate` into `dir`.
fn generated_template(dir: &Path) -> PathBuf {
    let path = dir.join("generated/config.yaml");
    let out = Command::new(RBORG)
        .args(["config", "generate", "-d"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    path
}

/// `rborg config generate --source` for each valid corpus file and the example, into `dir`:
/// (source, merged file).
fn merged_templates(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut sources: Vec<PathBuf> = corpus().into_iter().filter(|f| expected_valid(f)).collect();
    sources.push(webserver());
    sources
        .into_iter()
        .map(|source| {
            let merged = dir.join("merged").join(source.file_name().unwrap());
            let out = Command::new(RBORG)
                .args(["config", "generate", "--source"])
                .arg(&source)
                .arg("--destination")
                .arg(&merged)
                .current_dir(corpus_dir())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}: {}", source.display(), text(&out));
            (source, merged)
        })
        .collect()
}

/// Whether `file` holds an empty YAML document, which borgmatic 2.1.10 cannot validate (it
/// raises `AttributeError` and aborts the whole run).
fn empty_document(file: &Path) -> bool {
    let yaml = std::fs::read_to_string(file).unwrap();
    rborg_config::node::parse(&yaml, file).is_ok_and(|n| n.value == rborg_config::Value::Null)
}

#[test]
fn validate_verdicts_agree_with_the_file_names_and_borgmatic() {
    let home = tempfile::tempdir().unwrap();
    let mut files = corpus();
    files.push(webserver());
    files.push(generated_template(home.path()));
    // Merged templates (`generate --source`, all checked in `generate_with_source_...`): the
    // example's and the one of the source that sets the most options, for borgmatic's
    // verdict; each costs borgmatic ~0.3 s to parse.
    let merged = merged_templates(home.path());
    let options = |f: &Path| {
        std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with([' ', '#', '-']) && l.contains(':'))
            .count()
    };
    let richest = merged.iter().max_by_key(|(s, _)| options(s)).unwrap();
    files.push(richest.1.clone());
    files.push(
        merged
            .iter()
            .find(|(s, _)| *s == webserver())
            .unwrap()
            .1
            .clone(),
    );
    let expected = |f: &Path| !f.starts_with(corpus_dir()) || expected_valid(f);

    // One file at a time: the exit status is the verdict.
    for file in &files {
        let out = run(
            RBORG,
            &["config", "validate"],
            std::slice::from_ref(file),
            home.path(),
        );
        assert_eq!(
            out.status.code(),
            Some(if expected(file) { 0 } else { 1 }),
            "{}:\n{}",
            file.display(),
            text(&out)
        );
    }

    // All at once: every file is reported, and the summary says how it went.
    let mut ours = verdicts(&files, &|batch| {
        run(RBORG, &["config", "validate"], batch, home.path())
    });
    for (file, valid) in &ours {
        assert_eq!(*valid, expected(file), "{}", file.display());
    }
    let out = run(RBORG, &["config", "validate"], &files, home.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).ends_with("Configuration validation failed\n"));
    let valid: Vec<PathBuf> = files.iter().filter(|f| expected(f)).cloned().collect();
    let out = run(RBORG, &["config", "validate"], &valid, home.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("All configuration files are valid\n"));
    // Errors carry file:line:column.
    let typo = corpus_dir().join("invalid-typo.yaml");
    let out = run(
        RBORG,
        &["config", "validate"],
        std::slice::from_ref(&typo),
        home.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:5:1: At the top level: Additional properties are not allowed ('keep_dialy' was unexpected); did you mean 'keep_daily'?", typo.display())),
        "{stderr}"
    );

    if available(BORGMATIC, "borgmatic 2.x") {
        // The valid corpus files get borgmatic's verdict in
        // `show_prints_the_normalised_configurations_as_borgmatic_does` (its `--show` run
        // over all of them succeeds); the rest here. Empty documents one by one, the others
        // in one run (see `verdicts` for crashes).
        let (empty, rest): (Vec<PathBuf>, Vec<PathBuf>) = files
            .iter()
            .filter(|f| !(f.starts_with(corpus_dir()) && expected_valid(f)))
            .cloned()
            .partition(|f| empty_document(f));
        let borgmatic =
            |batch: &[PathBuf]| run(BORGMATIC, &["config", "validate"], batch, home.path());
        let mut theirs = verdicts(&rest, &borgmatic);
        for file in &empty {
            theirs.extend(verdicts(std::slice::from_ref(file), &borgmatic));
        }
        ours.retain(|f, _| theirs.contains_key(f));
        assert!(ours.len() >= 18);
        assert_eq!(ours, theirs);
    }
}

/// The sectioned (1.7) files, including the example, get the same verdict from borgmatic 1.7,
/// the version that defined that form.
#[test]
fn sectioned_verdicts_agree_with_borgmatic_1_7() {
    let mut files: Vec<PathBuf> = corpus()
        .into_iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .contains("sectioned")
        })
        .collect();
    assert!(files.len() >= 4);
    files.push(webserver());
    let home = tempfile::tempdir().unwrap();
    let ours = verdicts(&files, &|batch| {
        run(RBORG, &["config", "validate"], batch, home.path())
    });
    assert!(ours[&webserver()]);
    if !available(
        BORGMATIC_17_VALIDATOR,
        "borgmatic 1.7 (apt-get install borgmatic)",
    ) {
        return;
    }
    // validate-borgmatic-config takes the files after a single -c.
    let theirs = verdicts(&files, &|batch| {
        let mut command = Command::new(BORGMATIC_17_VALIDATOR);
        command.arg("-c").args(batch);
        command
            .current_dir(corpus_dir())
            .env("HOME", home.path())
            .output()
            .unwrap()
    });
    assert_eq!(ours, theirs);
}

/// The YAML documents of a `--show` run, each parsed.
fn shown_documents(stdout: &str) -> Vec<serde_json::Value> {
    let body = stdout
        .strip_suffix("All configuration files are valid\n")
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    let mut documents = Vec::new();
    for chunk in body.split("---\n").filter(|c| !c.trim().is_empty()) {
        let node = rborg_config::node::parse(chunk, Path::new("shown.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{chunk}"));
        documents.push(node.to_json());
    }
    documents
}

#[test]
fn show_prints_the_normalised_configurations_as_borgmatic_does() {
    let home = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = corpus().into_iter().filter(|f| expected_valid(f)).collect();
    files.push(webserver());
    let ours = run(
        RBORG,
        &["config", "validate", "--show"],
        &files,
        home.path(),
    );
    assert!(ours.status.success(), "{}", text(&ours));
    let documents = shown_documents(&String::from_utf8_lossy(&ours.stdout));

    // What is shown reads back as the configuration the library loaded.
    assert_eq!(documents.len(), files.len());
    for (file, shown) in files.iter().zip(&documents) {
        let loaded = rborg_config::validate(std::slice::from_ref(file))
            .remove(0)
            .1
            .unwrap();
        assert_eq!(&loaded.tree.to_json(), shown, "{}", file.display());
    }
    // A single file is shown without a document marker.
    let one = run(
        RBORG,
        &["config", "validate", "-s"],
        &files[..1],
        home.path(),
    );
    assert!(!String::from_utf8_lossy(&one.stdout).contains("---"));
    // Nothing is shown when a file is invalid.
    let mixed = [files[0].clone(), corpus_dir().join("invalid-typo.yaml")];
    let out = run(
        RBORG,
        &["config", "validate", "--show"],
        &mixed,
        home.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out));

    if available(BORGMATIC, "borgmatic 2.x") {
        let theirs = run(
            BORGMATIC,
            &["config", "validate", "--show"],
            &files,
            home.path(),
        );
        assert!(theirs.status.success(), "{}", text(&theirs));
        // Same documents (mapping order aside: borgmatic reorders merged keys), and the same
        // deprecation warnings, word for word, in the same order.
        assert_eq!(
            documents,
            shown_documents(&String::from_utf8_lossy(&theirs.stdout))
        );
        // rborg's own warning about passphrases in files others can read (the corpus files
        // are 0644 in a checkout) has no borgmatic counterpart (tested in rborg-config's
        // tests/secrets.rs)
        let ours_stderr: String = String::from_utf8_lossy(&ours.stderr)
            .lines()
            .filter(|l| !l.contains("holds an encryption passphrase and other users can read it"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(ours_stderr, String::from_utf8_lossy(&theirs.stderr));
    }
}

#[test]
fn generate_writes_a_private_template_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etc/borgmatic/config.yaml");
    let generate = |extra: &[&str]| {
        Command::new(RBORG)
            .args(["config", "generate", "--destination"])
            .arg(&path)
            .args(extra)
            .output()
            .unwrap()
    };
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    let out = generate(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!(
        "Generating a configuration file at: {}\n",
        path.display()
    )));
    assert!(
        stdout.ends_with("\nsummary:\nGenerate successful\n"),
        "{stdout}"
    );
    let template = rborg_config::generate_template();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), template);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);

    // An existing file is left alone without --overwrite.
    std::fs::write(&path, "keep me\n").unwrap();
    let out = generate(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains(&format!(
        "{} already exists. Aborting. Use --overwrite to replace the file.",
        path.display()
    )));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me\n");

    // With --overwrite it is replaced, and made private again.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = generate(&["--overwrite"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), template);
    assert_eq!(mode(&path), 0o600);

    // A --source that is not a configuration is refused, and nothing is written.
    let out = generate(&["--overwrite", "--source", "/etc/hostname"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("cannot read the source configuration"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), template);

    // borgmatic refuses the same way, with the same exit status, and writes mode 0600 too.
    if available(BORGMATIC, "borgmatic 2.x") {
        let theirs = |extra: &[&str], destination: &Path| {
            Command::new(BORGMATIC)
                .args(["config", "generate", "--destination"])
                .arg(destination)
                .args(extra)
                .env("HOME", dir.path())
                .output()
                .unwrap()
        };
        let out = theirs(&[], &path);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out).contains("already exists. Aborting. Use --overwrite to replace the file.")
        );
        let fresh = dir.path().join("borgmatic/config.yaml");
        assert!(theirs(&[], &fresh).status.success());
        assert_eq!(mode(&fresh), 0o600);
    }
}

/// `generate --source` keeps every option of the source: the merged file loads as exactly
/// the source's configuration (and, in `validate_verdicts_...`, borgmatic accepts it). For the
/// example, borgmatic's own merge gives the same configuration.
#[test]
fn generate_with_source_keeps_the_source_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let load = |f: &Path| {
        rborg_config::validate(&[f.to_path_buf()])
            .remove(0)
            .1
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .tree
            .to_json()
    };
    let merged = merged_templates(dir.path());
    assert!(merged.len() >= 10);
    for (source, merged) in &merged {
        assert_eq!(load(source), load(merged), "{}", source.display());
        // The template's descriptions are kept; the options the source sets are active, all
        // others commented out.
        let text = format!("\n{}", std::fs::read_to_string(merged).unwrap());
        assert!(text.contains("\n# List of source directories and files to back up."));
        let set = load(source);
        for name in rborg_config::schema::top_level_options() {
            let active = set.get(name).is_some_and(|v| {
                !(name == "bootstrap" && v.as_object().is_some_and(|m| m.is_empty()))
            });
            let wanted = if active {
                format!("\n{name}:")
            } else {
                format!("\n# {name}:")
            };
            assert!(text.contains(&wanted), "{}: {wanted:?}", merged.display());
        }
    }
    if available(BORGMATIC, "borgmatic 2.x") {
        let theirs = dir.path().join("borgmatic-merged.yaml");
        let out = Command::new(BORGMATIC)
            .args(["config", "generate", "--source"])
            .arg(webserver())
            .arg("--destination")
            .arg(&theirs)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let ours = &merged.iter().find(|(s, _)| *s == webserver()).unwrap().1;
        assert_eq!(load(ours), load(&theirs));
    }
}
