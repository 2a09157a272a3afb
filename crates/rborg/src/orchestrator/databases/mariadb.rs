//! MariaDB and MySQL dumps and restores, as borgmatic's `hooks/data_source/mariadb.py` and
//! `mysql.py` (2.x) and `hooks/mysql.py` (1.7): `mariadb-dump` / `mysqldump
//! --add-drop-database --single-transaction ... --databases NAME` into the pipe, restored by
//! piping the dump into `mariadb` / `mysql --batch` (the dump creates and selects its
//! database). `all` lists the databases with `SHOW SCHEMAS` (without the system schemas) and
//! dumps them into one file, or one file each when a `format` is configured. The password goes
//! through `MYSQL_PWD` (borgmatic's `password_transport: environment`), never the command line.

use std::path::Path;

use rborg_config::{Config, Database};

use super::dump::{CommandSpec, DumpJob};
use super::{capture, dump_filename, other_bool, other_str, Connection, Hook};
use crate::orchestrator::borg_call::ActionError;

/// Schemas `all` leaves out (borgmatic's `EXCLUDED_SYSTEM_DATABASE_NAMES`; rborg also leaves
/// out `mysql`, the grant tables, which borgmatic 2.x dumps with MariaDB's `--system`).
const EXCLUDED: [&str; 4] = ["information_schema", "performance_schema", "sys", "mysql"];

/// The client programs of the hook and the keys that override them.
fn programs(hook: Hook, db: &Database) -> (String, String) {
    let (dump_key, dump_default, client_key, client_default) = match hook {
        Hook::Mysql => ("mysql_dump_command", "mysqldump", "mysql_command", "mysql"),
        _ => (
            "mariadb_dump_command",
            "mariadb-dump",
            "mariadb_command",
            "mariadb",
        ),
    };
    (
        other_str(db, dump_key).unwrap_or(dump_default).to_string(),
        other_str(db, client_key)
            .unwrap_or(client_default)
            .to_string(),
    )
}

fn connection_flags(db: &Database, conn: &Connection) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(h) = &conn.hostname {
        flags.extend(["--host".to_string(), h.clone()]);
    }
    if let Some(p) = conn.port {
        flags.extend(["--port".to_string(), p.to_string()]);
    }
    if conn.hostname.is_some() || conn.port.is_some() {
        flags.extend(["--protocol".to_string(), "tcp".to_string()]);
    }
    if let Some(s) = other_str(db, "socket_path") {
        flags.extend(["--socket".to_string(), s.to_string()]);
    }
    if let Some(u) = &conn.username {
        flags.extend(["--user".to_string(), u.clone()]);
    }
    match db.other.get("tls").and_then(|v| v.as_bool()) {
        Some(true) => flags.push("--ssl".into()),
        Some(false) => flags.push("--skip-ssl".into()),
        None => {}
    }
    flags
}

fn split_option(db: &Database, key: &str) -> Vec<String> {
    other_str(db, key)
        .map(rborg_remote::client::shell_split)
        .unwrap_or_default()
}

/// `SHOW SCHEMAS` for `all`.
pub fn list_command(hook: Hook, db: &Database, conn: &Connection) -> CommandSpec {
    let (_, client) = programs(hook, db);
    let mut args = split_option(db, "list_options");
    args.extend(connection_flags(db, conn));
    args.extend(
        [
            "--skip-column-names",
            "--batch",
            "--execute",
            "show schemas",
        ]
        .map(String::from),
    );
    CommandSpec::new(&client, args).with_env("MYSQL_PWD", conn.password.as_deref())
}

/// The dump command for `names` (one dump file).
pub fn dump_command(hook: Hook, db: &Database, conn: &Connection, names: &[String]) -> CommandSpec {
    let (dump, _) = programs(hook, db);
    let mut args = db
        .options
        .as_deref()
        .map(rborg_remote::client::shell_split)
        .unwrap_or_default();
    if other_bool(db, "add_drop_database", true) {
        args.push("--add-drop-database".into());
    }
    args.push("--single-transaction".into());
    args.extend(connection_flags(db, conn));
    if other_bool(db, "events", true) {
        args.push("--events".into());
    }
    if other_bool(db, "routines", true) {
        args.push("--routines".into());
    }
    args.push("--databases".into());
    args.extend(names.iter().cloned());
    CommandSpec::new(&dump, args).with_env("MYSQL_PWD", conn.password.as_deref())
}

/// The dumps of one `mariadb_databases` / `mysql_databases` entry.
pub fn dump_jobs(
    hook: Hook,
    config: &Config,
    db: &Database,
    dir: &Path,
    dry_run: bool,
) -> Result<Vec<DumpJob>, ActionError> {
    let conn = Connection::for_dump(config, db)?;
    let names: Vec<String> = if db.name == "all" {
        if dry_run {
            return Ok(Vec::new());
        }
        let out = capture(
            &list_command(hook, db, &conn),
            &format!("Querying for \"all\" {} databases to dump", hook.title()),
        )?;
        let names: Vec<String> = out
            .lines()
            .map(str::trim)
            .filter(|n| !n.is_empty() && !EXCLUDED.contains(n))
            .map(str::to_string)
            .collect();
        if names.is_empty() {
            return Err(ActionError::new(format!(
                "Cannot find any {} databases to dump.",
                hook.title()
            )));
        }
        names
    } else {
        vec![db.name.clone()]
    };
    let job = |file_name: &str, dumped: &[String]| -> Result<DumpJob, ActionError> {
        Ok(DumpJob {
            label: format!("{} database \"{file_name}\"", hook.title()),
            fifo: dump_filename(dir, hook, file_name, db.hostname.as_deref())?,
            command: dump_command(hook, db, &conn, dumped),
            keep: Vec::new(),
        })
    };
    if db.name == "all" && db.format.is_some() {
        names
            .iter()
            .map(|n| job(n, std::slice::from_ref(n)))
            .collect()
    } else {
        Ok(vec![job(&db.name, &names)?])
    }
}

/// The restore command: the client reading the dump on standard input.
pub fn restore_command(hook: Hook, db: &Database, conn: &Connection) -> CommandSpec {
    let (_, client) = programs(hook, db);
    let mut args = split_option(db, "restore_options");
    args.push("--batch".into());
    args.extend(connection_flags(db, conn));
    CommandSpec::new(&client, args).with_env("MYSQL_PWD", conn.password.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_match_borgmatic() {
        let db: Database = serde_json::from_str(
            r#"{"name": "shop", "hostname": "127.0.0.1", "port": 3307, "username": "bk",
                "password": "pw-secret", "mysql_dump_command": "docker exec db mysqldump"}"#,
        )
        .unwrap();
        let conn = Connection {
            hostname: db.hostname.clone(),
            port: db.port,
            username: db.username.clone(),
            password: db.password.clone(),
        };
        let dump = dump_command(Hook::Mysql, &db, &conn, &["shop".into()]);
        assert_eq!(
            dump.display(),
            "docker exec db mysqldump --add-drop-database --single-transaction --host 127.0.0.1 \
             --port 3307 --protocol tcp --user bk --events --routines --databases shop"
        );
        assert_eq!(dump.env, [("MYSQL_PWD".into(), "pw-secret".into())]);
        assert_eq!(
            restore_command(Hook::Mariadb, &db, &conn).display(),
            "mariadb --batch --host 127.0.0.1 --port 3307 --protocol tcp --user bk"
        );
        assert_eq!(
            list_command(Hook::Mariadb, &db, &conn).display(),
            "mariadb --host 127.0.0.1 --port 3307 --protocol tcp --user bk --skip-column-names \
             --batch --execute 'show schemas'"
        );
    }
}
