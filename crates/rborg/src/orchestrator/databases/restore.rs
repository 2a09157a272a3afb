//! The `restore` action: finds the database dumps in an archive and streams each back into its
//! database (borgmatic's `actions/restore.py`).
//!
//! Dumps are recognised by their path in the archive, `.../<hook>/<hostname>[:<port>]/<name>`
//! below a directory whose name ends in `borgmatic`: borgmatic 1.7 and rborg write
//! `root/.borgmatic/<hook>/...`, borgmatic 2.x with borg 1.4+ `borgmatic/<hook>/...`, and
//! borgmatic 2.x with borg 1.2 `tmp/borgmatic-XXXX/borgmatic/<hook>/...`. Each dump is matched
//! to the configured database of the same hook and name (else the hook's `all` entry), as
//! borgmatic does, and restored with that entry's restore command, overridden by the `restore_*`
//! options and the command line.
//!
//! Streaming: the restore command starts with a pipe as its standard input; rborg's
//! `borg extract --stdout` then runs in this process with the process's standard output
//! pointed at that pipe, so the dump never touches the disk (borgmatic pipes a `borg extract
//! --stdout` process into the restore command the same way).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::thread::JoinHandle;

use rborg_config::{Config, Database};

use super::dump::{describe_status, CommandSpec};
use super::{capture, mariadb, mongodb, other_str, postgresql, sqlite, Connection, Hook};
use crate::orchestrator::actions::ActionContext;
use crate::orchestrator::arguments::RestoreArgs;
use crate::orchestrator::borg_call::{ActionError, Borg};
use crate::orchestrator::log;

/// A dump found in an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveDump {
    /// Its hook.
    pub hook: Hook,
    /// The host it was dumped from (`None`: localhost).
    pub hostname: Option<String>,
    /// The port, when the path holds one (borgmatic 2.x).
    pub port: Option<i64>,
    /// The database name (`all` for a dump of all databases).
    pub name: String,
    /// Its path in the archive.
    pub path: String,
}

/// The dumps among the paths of an archive listing, each once, in listing order: below a
/// directory named `*borgmatic`, or below `base` (the configured dump directory, without its
/// leading `/`).
pub fn dumps_in_listing<'a>(
    paths: impl IntoIterator<Item = &'a str>,
    base: Option<&str>,
) -> Vec<ArchiveDump> {
    let mut dumps: Vec<ArchiveDump> = Vec::new();
    for path in paths {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            let Some(hook) = Hook::from_key(parts[i]) else {
                continue;
            };
            let below_base = base.is_some_and(|b| parts[..i].join("/") == b);
            if !(parts[i - 1].ends_with("borgmatic") || below_base) || parts.len() < i + 3 {
                continue;
            }
            let (host, port) = match parts[i + 1].split_once(':') {
                Some((h, p)) => (h, p.parse().ok()),
                None => (parts[i + 1], None),
            };
            let dump = ArchiveDump {
                hook,
                hostname: (host != "localhost").then(|| host.to_string()),
                port,
                name: parts[i + 2].to_string(),
                path: parts[..i + 3].join("/"),
            };
            if !dumps.iter().any(|d| d.path == dump.path) {
                dumps.push(dump);
            }
            break;
        }
    }
    dumps
}

/// The configured database a dump restores with: same hook and name (preferring the same
/// host), else the hook's `all` entry.
pub fn matching_database<'a>(config: &'a Config, dump: &ArchiveDump) -> Option<&'a Database> {
    let entries = dump.hook.databases(config);
    let same_host = |db: &Database| {
        db.hostname.as_deref().filter(|h| *h != "localhost") == dump.hostname.as_deref()
    };
    let named: Vec<&Database> = entries.iter().filter(|d| d.name == dump.name).collect();
    named
        .iter()
        .copied()
        .find(|d| same_host(d))
        .or(named.first().copied())
        .or_else(|| entries.iter().find(|d| d.name == "all"))
}

fn option_i64(db: &Database, key: &str) -> Option<i64> {
    db.other.get(key).and_then(|v| v.as_i64())
}

/// The connection a restore uses: command line, then `restore_*` options, then the entry's.
pub fn restore_connection(
    config: &Config,
    db: &Database,
    args: &RestoreArgs,
) -> Result<Connection, ActionError> {
    let pick = |cli: &Option<String>, key: &str, own: &Option<String>| {
        cli.clone()
            .or_else(|| other_str(db, key).map(str::to_string))
            .or_else(|| own.clone())
    };
    let resolve = |what: &str, v: Option<String>| -> Result<Option<String>, ActionError> {
        v.map(|v| {
            rborg_config::resolve_credential(&v, config.working_directory.as_deref(), &|name| {
                std::env::var(name).ok()
            })
            .map_err(|e| ActionError::new(format!("{what}: {e}")))
        })
        .transpose()
    };
    let password = resolve(
        "password",
        pick(&args.password, "restore_password", &db.password),
    )?;
    if let Some(p) = &password {
        log::redact(p);
    }
    Ok(Connection {
        hostname: pick(&args.hostname, "restore_hostname", &db.hostname),
        port: args
            .port
            .or_else(|| option_i64(db, "restore_port"))
            .or(db.port),
        username: resolve(
            "username",
            pick(&args.username, "restore_username", &db.username),
        )?,
        password,
    })
}

/// Reads a child's output in the background, keeping the last 8 KiB.
fn collect(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 16384 {
                kept.drain(..kept.len() - 8192);
            }
        }
        kept
    })
}

/// Runs `borg extract --stdout ARCHIVE PATH` in this process with its standard output going to
/// `into` (the restore command's standard input), which is closed afterwards.
fn extract_into(
    borg: &Borg<'_>,
    repo: &str,
    archive: &str,
    path: &str,
    into: std::process::ChildStdin,
) -> Result<(), ActionError> {
    let mut args = vec!["extract".to_string(), "--stdout".to_string()];
    args.extend(borg.common_flags());
    args.push(format!("{repo}::{archive}"));
    args.push(path.to_string());
    let io = |e: nix::Error| ActionError::new(format!("cannot redirect standard output: {e}"));
    let _ = std::io::stdout().flush();
    let saved = nix::unistd::dup(1).map_err(io)?;
    if let Err(e) = nix::unistd::dup2(into.as_raw_fd(), 1) {
        let _ = nix::unistd::close(saved);
        return Err(io(e));
    }
    drop(into);
    // a warning (the path is not in the archive) is an error here, as in borgmatic
    let result = borg.run(args, true);
    let _ = std::io::stdout().flush();
    let restored = nix::unistd::dup2(saved, 1);
    let _ = nix::unistd::close(saved);
    restored.map_err(io)?;
    result.map(drop)
}

/// Runs `spec` with the dump streamed from the archive into its standard input.
fn restore_stream(
    borg: &Borg<'_>,
    cx: &ActionContext<'_>,
    archive: &str,
    dump: &ArchiveDump,
    spec: &CommandSpec,
) -> Result<(), ActionError> {
    let what = format!("{} database \"{}\"", dump.hook.title(), dump.name);
    log::debug(&format!("Restoring {what}: {}", spec.display()));
    let mut command = spec
        .command()
        .ok_or_else(|| ActionError::new(format!("{what}: empty restore command")))?;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ActionError::new(format!("{what}: cannot run {}: {e}", spec.argv[0])))?;
    let out = child.stdout.take().map(collect);
    let err = child.stderr.take().map(collect);
    let stdin = child.stdin.take().expect("stdin was piped");
    let extracted = extract_into(borg, &cx.repository.path, archive, &dump.path, stdin);
    if extracted.is_err() {
        let _ = child.kill();
    }
    let status = child.wait();
    let stdout = out.and_then(|t| t.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|t| t.join().ok()).unwrap_or_default();
    if !stdout.is_empty() {
        log::debug(String::from_utf8_lossy(&stdout).trim());
    }
    extracted.map_err(|e| ActionError {
        message: format!("Cannot restore {what}: {}", e.message),
        output: e.output,
    })?;
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(ActionError {
            message: format!(
                "Cannot restore {what}: {} {}: {}",
                spec.argv[0],
                describe_status(s),
                String::from_utf8_lossy(&stderr).trim()
            ),
            output: String::from_utf8_lossy(&stderr).into_owned(),
        }),
        Err(e) => Err(ActionError::new(format!("{what}: {e}"))),
    }
}

/// The `restore` action for one repository and the resolved `archive`.
pub fn restore(
    borg: &Borg<'_>,
    cx: &ActionContext<'_>,
    args: &RestoreArgs,
    archive: &str,
) -> Result<(), ActionError> {
    let dry = if cx.dry_run {
        " (dry run; not actually restoring anything)"
    } else {
        ""
    };
    log::info(&format!(
        "Restoring data sources from archive {archive}{dry}"
    ));
    let mut list = vec!["list".to_string(), "--short".to_string()];
    list.extend(borg.probe_flags());
    list.push(format!("{}::{archive}", cx.repository.path));
    let listing = borg.run_captured(list)?;
    let text = String::from_utf8_lossy(&listing.stdout);
    let base = super::dump_directory(cx.config);
    let base = base.to_string_lossy();
    let found = dumps_in_listing(text.lines(), Some(base.trim_start_matches('/')));
    if found.is_empty() {
        return Err(ActionError::new(format!(
            "No database dumps found in archive {archive}"
        )));
    }
    let mut selected: Vec<&ArchiveDump> = Vec::new();
    if args.databases.is_empty() {
        selected.extend(found.iter());
    } else {
        for name in &args.databases {
            let matches: Vec<&ArchiveDump> = found.iter().filter(|d| &d.name == name).collect();
            match matches.as_slice() {
                [] => {
                    return Err(ActionError::new(format!(
                        "Cannot restore database {name}: no dump of it in archive {archive}"
                    )))
                }
                [one] => selected.push(one),
                several => {
                    return Err(ActionError::new(format!(
                        "Cannot restore database {name}: archive {archive} has several dumps of that name ({})",
                        several.iter().map(|d| d.path.as_str()).collect::<Vec<_>>().join(", ")
                    )))
                }
            }
        }
    }
    for dump in selected {
        let db = matching_database(cx.config, dump).ok_or_else(|| {
            ActionError::new(format!(
                "Cannot restore {} database {}: no such database in the configuration ({})",
                dump.hook.title(),
                dump.name,
                dump.hook.key()
            ))
        })?;
        let conn = restore_connection(cx.config, db, args)?;
        log::info(&format!(
            "Restoring {} database {}{dry}",
            dump.hook.title(),
            dump.name
        ));
        let name = dump.name.as_str();
        match dump.hook {
            Hook::Postgresql => {
                let (restore, analyze) =
                    postgresql::restore_commands(db, &conn, name, &args.schemas);
                if cx.dry_run {
                    log::debug(&restore.display());
                    continue;
                }
                restore_stream(borg, cx, archive, dump, &restore)?;
                capture(&analyze, "Analyzing the restored PostgreSQL database")?;
            }
            Hook::Mariadb | Hook::Mysql => {
                let restore = mariadb::restore_command(dump.hook, db, &conn);
                if cx.dry_run {
                    log::debug(&restore.display());
                    continue;
                }
                restore_stream(borg, cx, archive, dump, &restore)?;
            }
            Hook::Sqlite => {
                let path = sqlite::database_path(db)?;
                let restore = sqlite::restore_command(db, &path);
                if cx.dry_run {
                    log::debug(&restore.display());
                    continue;
                }
                // borgmatic removes the old database file before loading the dump
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(ActionError::new(format!("{path}: cannot remove it: {e}")))
                    }
                }
                restore_stream(borg, cx, archive, dump, &restore)?;
            }
            Hook::Mongodb => {
                let file = conn
                    .password
                    .as_deref()
                    .map(mongodb::password_file)
                    .transpose()?;
                let restore = mongodb::restore_command(
                    db,
                    &conn,
                    name,
                    &args.schemas,
                    file.as_deref().map(|p| p.as_ref()),
                );
                if cx.dry_run {
                    log::debug(&restore.display());
                    continue;
                }
                restore_stream(borg, cx, archive, dump, &restore)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_dumps_of_every_borgmatic_layout() {
        let listing = [
            "root/.borgmatic",
            "root/.borgmatic/postgresql_databases",
            "root/.borgmatic/postgresql_databases/localhost",
            "root/.borgmatic/postgresql_databases/localhost/app",
            "borgmatic/postgresql_databases/dumps.json",
            "borgmatic/mariadb_databases/db1:3307/shop",
            "tmp/borgmatic-ab12/borgmatic/sqlite_databases/localhost/notes",
            "borgmatic/postgresql_databases/localhost/big/toc.dat",
            "borgmatic/postgresql_databases/localhost/big/3001.dat.gz",
            "etc/postgresql_databases/x/y",
            "home/u/notes.txt",
            "var/dumps/mysql_databases/localhost/all",
        ];
        let dumps = dumps_in_listing(listing, Some("var/dumps"));
        let short: Vec<_> = dumps
            .iter()
            .map(|d| {
                (
                    d.hook,
                    d.hostname.as_deref(),
                    d.port,
                    d.name.as_str(),
                    d.path.as_str(),
                )
            })
            .collect();
        assert_eq!(
            short,
            [
                (
                    Hook::Postgresql,
                    None,
                    None,
                    "app",
                    "root/.borgmatic/postgresql_databases/localhost/app"
                ),
                (
                    Hook::Mariadb,
                    Some("db1"),
                    Some(3307),
                    "shop",
                    "borgmatic/mariadb_databases/db1:3307/shop"
                ),
                (
                    Hook::Sqlite,
                    None,
                    None,
                    "notes",
                    "tmp/borgmatic-ab12/borgmatic/sqlite_databases/localhost/notes"
                ),
                (
                    Hook::Postgresql,
                    None,
                    None,
                    "big",
                    "borgmatic/postgresql_databases/localhost/big"
                ),
                (
                    Hook::Mysql,
                    None,
                    None,
                    "all",
                    "var/dumps/mysql_databases/localhost/all"
                ),
            ]
        );
    }

    #[test]
    fn dumps_match_their_configured_database_or_all() {
        let config: Config = serde_json::from_str(
            r#"{"postgresql_databases": [{"name": "app", "hostname": "h1"}, {"name": "app"}, {"name": "all"}]}"#,
        )
        .unwrap();
        let dump = |name: &str, host: Option<&str>| ArchiveDump {
            hook: Hook::Postgresql,
            hostname: host.map(str::to_string),
            port: None,
            name: name.into(),
            path: String::new(),
        };
        let db = matching_database(&config, &dump("app", None)).unwrap();
        assert_eq!(db.hostname, None);
        let db = matching_database(&config, &dump("app", Some("h1"))).unwrap();
        assert_eq!(db.hostname.as_deref(), Some("h1"));
        assert_eq!(
            matching_database(&config, &dump("other", None))
                .unwrap()
                .name,
            "all"
        );
        assert!(matching_database(&Config::default(), &dump("app", None)).is_none());
    }

    #[test]
    fn command_line_overrides_win_over_restore_options() {
        let db: Database = serde_json::from_str(
            r#"{"name": "app", "hostname": "h", "port": 1, "restore_hostname": "rh", "restore_port": 2,
                "username": "u", "password": "p-secret", "restore_password": "rp-secret"}"#,
        )
        .unwrap();
        let mut args = RestoreArgs::default();
        let conn = restore_connection(&Config::default(), &db, &args).unwrap();
        assert_eq!(
            (
                conn.hostname.as_deref(),
                conn.port,
                conn.username.as_deref(),
                conn.password.as_deref()
            ),
            (Some("rh"), Some(2), Some("u"), Some("rp-secret"))
        );
        args.hostname = Some("cli".into());
        args.port = Some(3);
        args.password = Some("cli-secret".into());
        let conn = restore_connection(&Config::default(), &db, &args).unwrap();
        assert_eq!(
            (
                conn.hostname.as_deref(),
                conn.port,
                conn.password.as_deref()
            ),
            (Some("cli"), Some(3), Some("cli-secret"))
        );
    }
}
