//! Monitoring hooks end to end, with borgmatic 2.x as the oracle: `borgmatic create` (running
//! real borg 1.2.4) and `rborg create`, each with healthchecks, cronitor, uptime kuma, ntfy and
//! loki pointed at a recording server on 127.0.0.1, must send the same requests (methods, paths,
//! queries, content types; the same JSON for ntfy and Loki; logs or no logs for Healthchecks)
//! for a successful run and for a failed one. A dry run sends nothing. The per-service details
//! (truncation, auth, PagerDuty, cronhub...) are unit-tested in `src/orchestrator/monitor/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rborg_testkit::http_recorder::{RecordedRequest, Recorder};
use rborg_testkit::{borg_available, borg_command, borgmatic2, ok, BORG};
use serde_json::Value as Json;

const WHAT: &str = "comparison of monitoring hooks with borgmatic";

fn hooks(url: &str) -> String {
    format!(
        "healthchecks: {{ping_url: {url}/hc/key/slug, send_logs: true, create_slug: true}}\n\
         cronitor: {{ping_url: {url}/cronitor/d3x0c1}}\n\
         uptime_kuma: {{push_url: {url}/kuma/api/push/abcd}}\n\
         ntfy:\n  topic: backups\n  server: {url}/ntfy\n  states: [start, finish, fail]\n  \
         start: {{title: Started, message: go, priority: high, tags: 'borgmatic, +1'}}\n\
         loki: {{url: {url}/loki/push, labels: {{app: borgmatic, config: __config, host: __hostname, path: __config_path}}}}\n"
    )
}

/// Requests reduced to what both implementations must agree on, grouped by service (the first
/// path segment): rborg pings the services in parallel, borgmatic one after the other.
fn normalize(requests: Vec<RecordedRequest>) -> BTreeMap<String, Vec<Json>> {
    let mut services: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    for r in requests {
        let service = r.path.split('/').nth(1).unwrap_or_default().to_string();
        let body = match service.as_str() {
            "hc" => Json::Bool(!r.body.is_empty()),
            "ntfy" => serde_json::from_slice(&r.body).unwrap(),
            "loki" => {
                let mut body: Json = serde_json::from_slice(&r.body).unwrap();
                for value in body["streams"][0]["values"].as_array_mut().unwrap() {
                    value[0] = Json::Null;
                }
                body
            }
            _ => Json::String(r.body_text()),
        };
        let content_type = r.header("content-type").map(String::from);
        services
            .entry(service)
            .or_default()
            .push(serde_json::json!({
                "method": r.method, "path": r.path, "query": r.query,
                "content_type": content_type, "body": body,
            }));
    }
    services
}

/// A run of `program -c CONFIG --verbosity 1 ARGS create` in `dir`, and the requests `server` received.
struct Run {
    out: Output,
    requests: Vec<RecordedRequest>,
}

fn run(program: &Path, dir: &Path, repository: &Path, args: &[&str]) -> Run {
    let server = Recorder::start();
    let home = dir.join("home");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "source_directories: [{}]\nrepositories: [{{path: {}}}]\n\
             user_runtime_directory: {}\nuser_state_directory: {}\n{}",
            dir.join("source").display(),
            repository.display(),
            dir.join("runtime").display(),
            dir.join("state").display(),
            hooks(&server.url())
        ),
    )
    .unwrap();
    let out = Command::new(program)
        .arg("-c")
        .arg(&config)
        .args(["--verbosity", "1"])
        .args(args)
        .arg("create")
        .env("HOME", &home)
        .env("BORG_BASE_DIR", &home)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env_remove("BORG_REPO")
        .env_remove("BORG_PASSPHRASE")
        .output()
        .unwrap();
    Run {
        out,
        requests: server.requests(),
    }
}

/// A scratch directory with a source tree and an unencrypted repository made by borg.
fn world() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("source")).unwrap();
    std::fs::write(dir.path().join("source/file"), "data").unwrap();
    let repo = dir.path().join("repo");
    let out = borg_command(
        BORG,
        &["init", "-e", "none"],
        dir.path(),
        &dir.path().join("home"),
        "",
    )
    .arg(&repo)
    .output()
    .unwrap();
    ok(&out, "borg init");
    (dir, repo)
}

#[test]
fn successful_run_sends_what_borgmatic_sends() {
    compare_with_borgmatic(true);
}

#[test]
fn failed_run_sends_what_borgmatic_sends() {
    compare_with_borgmatic(false);
}

fn compare_with_borgmatic(succeeds: bool) {
    if !borg_available(WHAT) {
        return;
    }
    let Some(borgmatic) = borgmatic2(WHAT) else {
        return;
    };
    let rborg = PathBuf::from(env!("CARGO_BIN_EXE_rborg"));
    let label = if succeeds { "success" } else { "failure" };
    let mut results = Vec::new();
    // The same configuration file and repository for both (Loki sends the file's path).
    let (dir, repo) = world();
    let repository = if succeeds {
        repo
    } else {
        dir.path().join("missing")
    };
    for program in [&borgmatic, &rborg] {
        let run = run(program, dir.path(), &repository, &[]);
        assert_eq!(
            run.out.status.success(),
            succeeds,
            "{} ({label}): {}",
            program.display(),
            String::from_utf8_lossy(&run.out.stderr)
        );
        results.push(normalize(run.requests));
    }
    let (theirs, ours) = (&results[0], &results[1]);
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ["cronitor", "hc", "kuma", "loki", "ntfy"],
        "{label}: {theirs:#?}"
    );
    for (service, requests) in theirs {
        assert_eq!(Some(requests), ours.get(service), "{service} ({label})");
    }
    assert_eq!(theirs.len(), ours.len(), "{label}: {ours:#?}");
    // Logs go with the log ping and the last one (so the comparison above is not vacuous).
    let hc = &ours["hc"];
    assert_eq!(
        hc.iter().map(|r| r["body"] == true).collect::<Vec<_>>(),
        [false, true, true],
        "{label}: {hc:#?}"
    );
}

#[test]
fn dry_run_sends_nothing() {
    if !borg_available(WHAT) {
        return;
    }
    let (dir, repo) = world();
    let run = run(
        Path::new(env!("CARGO_BIN_EXE_rborg")),
        dir.path(),
        &repo,
        &["--dry-run"],
    );
    ok(&run.out, "rborg create --dry-run");
    assert!(run.requests.is_empty(), "{:#?}", run.requests);
}
