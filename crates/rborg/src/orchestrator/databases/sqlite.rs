//! SQLite dumps and restores, as borgmatic's `hooks/data_source/sqlite.py`: `sqlite3 -bail PATH
//! .dump` into the pipe; restore removes the database file and pipes the dump into `sqlite3
//! -bail PATH`.

use std::path::Path;

use rborg_config::Database;

use super::dump::{CommandSpec, DumpJob};
use super::{dump_filename, other_str, Hook};
use crate::orchestrator::actions::expand_home;
use crate::orchestrator::borg_call::ActionError;

/// The database file of an entry.
pub fn database_path(db: &Database) -> Result<String, ActionError> {
    db.path
        .as_deref()
        .map(expand_home)
        .ok_or_else(|| ActionError::new(format!("SQLite database {}: no path configured", db.name)))
}

/// The dump command.
pub fn dump_command(db: &Database, path: &str) -> CommandSpec {
    CommandSpec::new(
        other_str(db, "sqlite_command").unwrap_or("sqlite3"),
        vec!["-bail".into(), path.to_string(), ".dump".into()],
    )
}

/// The dump of one `sqlite_databases` entry. A missing database file is dumped anyway (an
/// empty dump), with a warning, as borgmatic does.
pub fn dump_jobs(db: &Database, dir: &Path) -> Result<Vec<DumpJob>, ActionError> {
    let path = database_path(db)?;
    if !Path::new(&path).exists() {
        crate::orchestrator::log::warning(&format!(
            "No SQLite database at {path}; an empty database will be created and dumped"
        ));
    }
    Ok(vec![DumpJob {
        label: format!("SQLite database \"{}\" at {path}", db.name),
        fifo: dump_filename(dir, Hook::Sqlite, &db.name, None)?,
        command: dump_command(db, &path),
        keep: Vec::new(),
    }])
}

/// The restore command (the caller removes the old file first, as borgmatic does).
pub fn restore_command(db: &Database, path: &str) -> CommandSpec {
    CommandSpec::new(
        other_str(db, "sqlite_restore_command").unwrap_or("sqlite3"),
        vec!["-bail".into(), path.to_string()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_match_borgmatic() {
        let db: Database =
            serde_json::from_str(r#"{"name": "notes", "path": "/var/lib/notes.db"}"#).unwrap();
        let path = database_path(&db).unwrap();
        assert_eq!(
            dump_command(&db, &path).display(),
            "sqlite3 -bail /var/lib/notes.db .dump"
        );
        assert_eq!(
            restore_command(&db, &path).display(),
            "sqlite3 -bail /var/lib/notes.db"
        );
    }
}
