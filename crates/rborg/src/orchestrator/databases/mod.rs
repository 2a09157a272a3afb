//! Database hooks (issue 7): PostgreSQL, MariaDB/MySQL, SQLite and MongoDB dumps streamed into
//! the archive by `create`, and the `restore` action (see docs/databases.md).
//!
//! Follows borgmatic's data source hooks (`borgmatic/hooks/data_source/*.py` in 2.x,
//! `borgmatic/hooks/{postgresql,mysql,mongodb,dump}.py` in 1.7): the same dump and restore
//! command lines, the same configuration keys, and the archive layout of borgmatic 1.7
//! (`<home>/.borgmatic/<hook>/<hostname>/<name>`, i.e. `root/.borgmatic/...` in the archive), which
//! both borgmatic 1.7 and 2.x restore; `rborg restore` reads that layout and borgmatic 2.x's
//! (`borgmatic/<hook>/<hostname>[:<port>]/<name>`).
//!
//! Modules: [`dump`] (named pipes, dump processes, the commit gate), [`postgresql`],
//! [`mariadb`] (also MySQL), [`sqlite`], [`mongodb`] (command lines per database), [`restore`]
//! (finding dumps in an archive and streaming them back).

pub mod dump;
pub mod mariadb;
pub mod mongodb;
pub mod postgresql;
pub mod restore;
pub mod sqlite;

use std::path::{Path, PathBuf};

use rborg_config::{Config, Database};

pub use dump::commit_gate;
use dump::{CommandSpec, DumpJob, DumpSession};

use super::actions::expand_home;
use super::borg_call::ActionError;
use super::log;

/// A database hook (the configuration key, which is also the directory name in the archive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// `postgresql_databases`.
    Postgresql,
    /// `mariadb_databases`.
    Mariadb,
    /// `mysql_databases`.
    Mysql,
    /// `sqlite_databases`.
    Sqlite,
    /// `mongodb_databases`.
    Mongodb,
}

impl Hook {
    /// Every hook, in the order borgmatic runs them.
    pub const ALL: [Hook; 5] = [
        Hook::Postgresql,
        Hook::Mariadb,
        Hook::Mysql,
        Hook::Sqlite,
        Hook::Mongodb,
    ];

    /// The configuration key and archive directory name.
    pub fn key(self) -> &'static str {
        match self {
            Hook::Postgresql => "postgresql_databases",
            Hook::Mariadb => "mariadb_databases",
            Hook::Mysql => "mysql_databases",
            Hook::Sqlite => "sqlite_databases",
            Hook::Mongodb => "mongodb_databases",
        }
    }

    /// The hook whose key is `key`.
    pub fn from_key(key: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.key() == key)
    }

    /// The product name, for messages.
    pub fn title(self) -> &'static str {
        match self {
            Hook::Postgresql => "PostgreSQL",
            Hook::Mariadb => "MariaDB",
            Hook::Mysql => "MySQL",
            Hook::Sqlite => "SQLite",
            Hook::Mongodb => "MongoDB",
        }
    }

    /// The configured databases of this hook.
    pub fn databases(self, config: &Config) -> &[Database] {
        match self {
            Hook::Postgresql => &config.postgresql_databases,
            Hook::Mariadb => &config.mariadb_databases,
            Hook::Mysql => &config.mysql_databases,
            Hook::Sqlite => &config.sqlite_databases,
            Hook::Mongodb => &config.mongodb_databases,
        }
    }
}

/// How to reach a database server: the configured values, or for a restore the `restore_*`
/// options and the `restore` command-line overrides (borgmatic's `resolve_database_option`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// `--host`.
    pub hostname: Option<String>,
    /// `--port`.
    pub port: Option<i64>,
    /// `--username` / `--user`.
    pub username: Option<String>,
    /// The password (credential references resolved); passed through the environment.
    pub password: Option<String>,
}

/// A string option of a database entry that is not one of the typed fields.
pub fn other_str<'a>(db: &'a Database, key: &str) -> Option<&'a str> {
    db.other.get(key).and_then(|v| v.as_str())
}

/// A boolean option of a database entry, with its default.
pub fn other_bool(db: &Database, key: &str, default: bool) -> bool {
    db.other
        .get(key)
        .and_then(|v| v.as_bool())
        .unwrap_or(default)
}

/// Resolves a `{credential ...}` reference (or returns the plain value).
fn resolve(
    config: &Config,
    what: &str,
    value: Option<&str>,
) -> Result<Option<String>, ActionError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let resolved =
        rborg_config::resolve_credential(value, config.working_directory.as_deref(), &|name| {
            std::env::var(name).ok()
        })
        .map_err(|e| ActionError::new(format!("{what}: {e}")))?;
    Ok(Some(resolved))
}

impl Connection {
    /// The connection a dump uses.
    pub fn for_dump(config: &Config, db: &Database) -> Result<Connection, ActionError> {
        let password = resolve(config, "password", db.password.as_deref())?;
        if let Some(p) = &password {
            log::redact(p);
        }
        Ok(Connection {
            hostname: db.hostname.clone(),
            port: db.port,
            username: resolve(config, "username", db.username.as_deref())?,
            password,
        })
    }
}

/// Where dumps are written while `create` runs: `borgmatic_source_directory`, by default
/// `~/.borgmatic` (borgmatic 1.7's `DEFAULT_BORGMATIC_SOURCE_DIRECTORY`, still probed by 2.x's
/// restore), so the archive holds `root/.borgmatic/<hook>/<host>/<name>` as borgmatic 1.7's do.
pub fn dump_directory(config: &Config) -> PathBuf {
    PathBuf::from(expand_home(
        config
            .borgmatic_source_directory
            .as_deref()
            .unwrap_or("~/.borgmatic"),
    ))
}

/// `DIR/<hook>/<hostname or localhost>/<name>` (borgmatic 1.7's `make_database_dump_filename`);
/// a name with a `/` is refused as borgmatic does.
pub fn dump_filename(
    dir: &Path,
    hook: Hook,
    name: &str,
    hostname: Option<&str>,
) -> Result<PathBuf, ActionError> {
    if name.contains('/') || name.is_empty() || name == "." || name == ".." {
        return Err(ActionError::new(format!("Invalid database name {name}")));
    }
    let host = hostname.filter(|h| !h.is_empty()).unwrap_or("localhost");
    if host.contains('/') {
        return Err(ActionError::new(format!(
            "Invalid database hostname {host} (use socket_path or a host name for dumps)"
        )));
    }
    Ok(dir.join(hook.key()).join(host).join(name))
}

/// Runs a command to completion and returns its standard output (listing databases for `all`).
pub fn capture(spec: &CommandSpec, what: &str) -> Result<String, ActionError> {
    log::debug(&format!("{what}: {}", spec.display()));
    let mut command = spec
        .command()
        .ok_or_else(|| ActionError::new(format!("{what}: empty command")))?;
    let out = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ActionError::new(format!("{what}: cannot run {}: {e}", spec.argv[0])))?;
    if !out.status.success() {
        return Err(ActionError {
            message: format!(
                "{what}: {} {}: {}",
                spec.argv[0],
                dump::describe_status(out.status),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The dumps the configuration asks for.
fn dump_jobs(config: &Config, dir: &Path, dry_run: bool) -> Result<Vec<DumpJob>, ActionError> {
    let mut jobs = Vec::new();
    for hook in Hook::ALL {
        let databases = hook.databases(config);
        if databases.is_empty() {
            continue;
        }
        log::info(&format!(
            "Dumping {} databases{}",
            hook.title(),
            if dry_run {
                " (dry run; not actually dumping anything)"
            } else {
                ""
            }
        ));
        for db in databases {
            let found = match hook {
                Hook::Postgresql => postgresql::dump_jobs(config, db, dir, dry_run)?,
                Hook::Mariadb | Hook::Mysql => mariadb::dump_jobs(hook, config, db, dir, dry_run)?,
                Hook::Sqlite => sqlite::dump_jobs(db, dir)?,
                Hook::Mongodb => mongodb::dump_jobs(config, db, dir)?,
            };
            jobs.extend(found);
        }
    }
    Ok(jobs)
}

/// The dumps of a running `create`: the session and the directory to add as a source root.
pub struct CreateDumps {
    /// The streaming dumps.
    pub session: DumpSession,
    /// The directory holding the named pipes (a source root of the archive).
    pub root: PathBuf,
}

/// Starts the configured dumps before `borg create` (borgmatic's `dump_data_sources`); `None`
/// when no database is configured or on a dry run (the commands are only logged).
pub fn start_dumps(config: &Config, dry_run: bool) -> Result<Option<CreateDumps>, ActionError> {
    if Hook::ALL.iter().all(|h| h.databases(config).is_empty()) {
        return Ok(None);
    }
    let root = dump_directory(config);
    let jobs = dump_jobs(config, &root, dry_run)?;
    if dry_run {
        for job in &jobs {
            log::debug(&format!(
                "Dumping {} to {} (dry run): {}",
                job.label,
                job.fifo.display(),
                job.command.display()
            ));
        }
        return Ok(None);
    }
    let directories = Hook::ALL
        .iter()
        .filter(|h| !h.databases(config).is_empty())
        .map(|h| root.join(h.key()))
        .collect();
    let session = DumpSession::start(jobs, directories).map_err(ActionError::new)?;
    Ok(Some(CreateDumps { session, root }))
}

/// Ends the dumps after `borg create` returned `result`: waits for every dump process and
/// removes the pipes. A failed dump fails the action (its message names the database and the
/// command's error output) even when borg itself stopped because of it.
pub fn finish_dumps<T>(
    dumps: Option<CreateDumps>,
    result: Result<T, ActionError>,
) -> Result<T, ActionError> {
    let Some(dumps) = dumps else {
        return result;
    };
    let failures = dumps.session.finish(result.is_ok());
    if failures.is_empty() {
        return result;
    }
    let output = match &result {
        Err(e) => e.output.clone(),
        Ok(_) => String::new(),
    };
    let mut message = format!("Database dump failed: {}", failures.join("; "));
    if result.is_ok() {
        message.push_str(" (the archive was saved before the failure was detected)");
    } else {
        message.push_str("; no archive was saved");
    }
    Err(ActionError { message, output })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_paths_follow_borgmatic_1_7() {
        let dir = Path::new("/root/.borgmatic");
        assert_eq!(
            dump_filename(dir, Hook::Postgresql, "app", None).unwrap(),
            Path::new("/root/.borgmatic/postgresql_databases/localhost/app")
        );
        assert_eq!(
            dump_filename(dir, Hook::Mysql, "all", Some("db.example")).unwrap(),
            Path::new("/root/.borgmatic/mysql_databases/db.example/all")
        );
        assert!(dump_filename(dir, Hook::Sqlite, "a/b", None).is_err());
        assert_eq!(Hook::from_key("mariadb_databases"), Some(Hook::Mariadb));
        assert_eq!(Hook::from_key("x_databases"), None);
    }
}
