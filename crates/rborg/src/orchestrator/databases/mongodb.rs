//! MongoDB dumps and restores, as borgmatic's `hooks/data_source/mongodb.py`: `mongodump
//! --archive [--db NAME]` into the pipe and `mongorestore --archive [--drop]` from it. The
//! password goes into a 0600 temporary configuration file passed with `--config` (borgmatic
//! writes the same `password: ...` file to a pipe), never the command line.
//!
//! MongoDB is not installable from Debian 12's archive on these machines, so only the command
//! lines are tested (unit tests); the streaming around them is shared with the other hooks.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rborg_config::{Config, Database};

use super::dump::{CommandSpec, DumpJob};
use super::{dump_filename, other_str, Connection, Hook};
use crate::orchestrator::borg_call::ActionError;

/// Writes `password: ...` to a 0600 temporary file for `--config`.
pub fn password_file(password: &str) -> Result<Arc<tempfile::TempPath>, ActionError> {
    let mut file = tempfile::Builder::new()
        .prefix("rborg-mongodb-")
        .tempfile()
        .map_err(|e| ActionError::new(format!("cannot write a MongoDB password file: {e}")))?;
    writeln!(file, "password: {password}")
        .map_err(|e| ActionError::new(format!("cannot write a MongoDB password file: {e}")))?;
    Ok(Arc::new(file.into_temp_path()))
}

fn connection_flags(db: &Database, conn: &Connection, config_file: Option<&Path>) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(h) = &conn.hostname {
        flags.extend(["--host".to_string(), h.clone()]);
    }
    if let Some(p) = conn.port {
        flags.extend(["--port".to_string(), p.to_string()]);
    }
    if let Some(u) = &conn.username {
        flags.extend(["--username".to_string(), u.clone()]);
    }
    if let Some(f) = config_file {
        flags.extend(["--config".to_string(), f.display().to_string()]);
    }
    if let Some(a) = other_str(db, "authentication_database") {
        flags.extend(["--authenticationDatabase".to_string(), a.to_string()]);
    }
    flags
}

/// The dump command (`config_file`: the password file, if any).
pub fn dump_command(db: &Database, conn: &Connection, config_file: Option<&Path>) -> CommandSpec {
    let mut args = connection_flags(db, conn, config_file);
    if db.name != "all" {
        args.extend(["--db".to_string(), db.name.clone()]);
    }
    if let Some(o) = &db.options {
        args.extend(o.split(' ').filter(|s| !s.is_empty()).map(str::to_string));
    }
    args.push("--archive".into());
    CommandSpec::new(
        other_str(db, "mongodump_command").unwrap_or("mongodump"),
        args,
    )
}

/// The dump of one `mongodb_databases` entry.
pub fn dump_jobs(config: &Config, db: &Database, dir: &Path) -> Result<Vec<DumpJob>, ActionError> {
    if db.format.as_deref().is_some_and(|f| f != "archive") {
        return Err(ActionError::new(format!(
            "MongoDB database {}: only the archive format can be streamed (rborg does not support the directory format yet)",
            db.name
        )));
    }
    let conn = Connection::for_dump(config, db)?;
    let file = conn.password.as_deref().map(password_file).transpose()?;
    Ok(vec![DumpJob {
        label: format!("MongoDB database \"{}\"", db.name),
        fifo: dump_filename(dir, Hook::Mongodb, &db.name, db.hostname.as_deref())?,
        command: dump_command(db, &conn, file.as_deref().map(|p| p.as_ref())),
        keep: file.into_iter().collect(),
    }])
}

/// The restore command reading the dump on standard input.
pub fn restore_command(
    db: &Database,
    conn: &Connection,
    name: &str,
    schemas: &[String],
    config_file: Option<&Path>,
) -> CommandSpec {
    let mut args = vec!["--archive".to_string()];
    if name != "all" {
        args.push("--drop".into());
    }
    args.extend(connection_flags(db, conn, config_file));
    if let Some(o) = other_str(db, "restore_options") {
        args.extend(o.split(' ').filter(|s| !s.is_empty()).map(str::to_string));
    }
    for schema in schemas {
        args.extend(["--nsInclude".to_string(), schema.clone()]);
    }
    CommandSpec::new(
        other_str(db, "mongorestore_command").unwrap_or("mongorestore"),
        args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_match_borgmatic() {
        let db: Database = serde_json::from_str(
            r#"{"name": "logs", "hostname": "mongo1", "port": 27018, "username": "bk",
                "password": "pw-secret", "authentication_database": "admin"}"#,
        )
        .unwrap();
        let conn = Connection {
            hostname: db.hostname.clone(),
            port: db.port,
            username: db.username.clone(),
            password: db.password.clone(),
        };
        let file = password_file("pw-secret").unwrap();
        let text = std::fs::read_to_string(file.as_ref() as &Path).unwrap();
        assert_eq!(text, "password: pw-secret\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file.as_ref() as &Path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let f = file.as_ref() as &Path;
        let dump = dump_command(&db, &conn, Some(f));
        assert_eq!(
            dump.display(),
            format!(
                "mongodump --host mongo1 --port 27018 --username bk --config {} \
                 --authenticationDatabase admin --db logs --archive",
                f.display()
            )
        );
        assert!(!dump.display().contains("pw-secret"));
        let restore = restore_command(&db, &conn, "logs", &["logs.events".into()], None);
        assert_eq!(
            restore.display(),
            "mongorestore --archive --drop --host mongo1 --port 27018 --username bk \
             --authenticationDatabase admin --nsInclude logs.events"
        );
    }
}
