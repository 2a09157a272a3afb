//! PostgreSQL dumps and restores, as borgmatic's `hooks/data_source/postgresql.py` (2.x) and
//! `hooks/postgresql.py` (1.7): `pg_dump --format custom` per database (`pg_dumpall` for `all`
//! without a format), `pg_restore --clean --if-exists --exit-on-error` (`psql` for plain and
//! `all` dumps) and `ANALYZE` afterwards. The password goes through `PGPASSWORD`.

use std::path::Path;

use rborg_config::{Config, Database};

use super::dump::{CommandSpec, DumpJob};
use super::{capture, dump_filename, other_bool, other_str, Connection, Hook};
use crate::orchestrator::borg_call::ActionError;

/// Databases never dumped by `all` (borgmatic's `EXCLUDED_DATABASE_NAMES`).
const EXCLUDED: [&str; 2] = ["template0", "template1"];

/// `--host`, `--port`, `--username` for `conn`.
fn connection_flags(conn: &Connection) -> Vec<String> {
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
    flags
}

/// `PGPASSWORD` and the `PGSSL*` variables of borgmatic's `make_environment`.
fn with_environment(spec: CommandSpec, db: &Database, conn: &Connection) -> CommandSpec {
    let mut spec = spec.with_env("PGPASSWORD", conn.password.as_deref());
    for (key, var) in [
        ("ssl_mode", "PGSSLMODE"),
        ("ssl_cert", "PGSSLCERT"),
        ("ssl_key", "PGSSLKEY"),
        ("ssl_root_cert", "PGSSLROOTCERT"),
        ("ssl_crl", "PGSSLCRL"),
    ] {
        if let Some(v) = other_str(db, key) {
            spec.env.push((var.to_string(), v.to_string()));
        }
    }
    spec
}

fn split_option(db: &Database, key: &str) -> Vec<String> {
    other_str(db, key)
        .map(rborg_remote::client::shell_split)
        .unwrap_or_default()
}

/// The `psql --list` command that finds the databases for `all` with a format.
pub fn list_command(db: &Database, conn: &Connection) -> CommandSpec {
    let mut args: Vec<String> = [
        "--list",
        "--no-password",
        "--no-psqlrc",
        "--csv",
        "--tuples-only",
    ]
    .map(String::from)
    .to_vec();
    args.extend(connection_flags(conn));
    args.extend(split_option(db, "list_options"));
    with_environment(
        CommandSpec::new(other_str(db, "psql_command").unwrap_or("psql"), args),
        db,
        conn,
    )
}

/// The database names in `psql --list --csv --tuples-only` output (the first field of each
/// CSV record; quoted fields may hold commas, `""` and newlines), without the templates.
pub fn parse_list(output: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = output.chars().peekable();
    while chars.peek().is_some() {
        // the first field of a record
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        break;
                    }
                } else {
                    field.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c == '\n' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        // skip the rest of the record, minding quoted fields
        let mut quoted = false;
        for c in chars.by_ref() {
            match c {
                '"' => quoted = !quoted,
                '\n' if !quoted => break,
                _ => {}
            }
        }
        let field = field.trim_end_matches('\r').to_string();
        if !field.is_empty() && !EXCLUDED.contains(&field.as_str()) {
            names.push(field);
        }
    }
    names
}

/// The dump command of database `name` (`all`: `pg_dumpall`) from entry `db`.
pub fn dump_command(db: &Database, conn: &Connection, name: &str) -> CommandSpec {
    let all = name == "all";
    let format = db
        .format
        .clone()
        .or_else(|| (!all).then(|| "custom".to_string()));
    let mut args: Vec<String> = ["--no-password", "--clean", "--if-exists"]
        .map(String::from)
        .to_vec();
    args.extend(connection_flags(conn));
    if other_bool(db, "no_owner", false) {
        args.push("--no-owner".into());
    }
    if let Some(f) = &format {
        args.extend(["--format".to_string(), f.clone()]);
    }
    if let Some(c) = db.other.get("compression") {
        let c = c
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| c.to_string());
        args.extend(["--compress".to_string(), c]);
    }
    args.extend(
        db.options
            .as_deref()
            .map(rborg_remote::client::shell_split)
            .unwrap_or_default(),
    );
    if !all {
        args.push(name.to_string());
    }
    let base =
        other_str(db, "pg_dump_command").unwrap_or(if all { "pg_dumpall" } else { "pg_dump" });
    with_environment(CommandSpec::new(base, args), db, conn)
}

/// The dumps of one `postgresql_databases` entry.
pub fn dump_jobs(
    config: &Config,
    db: &Database,
    dir: &Path,
    dry_run: bool,
) -> Result<Vec<DumpJob>, ActionError> {
    let conn = Connection::for_dump(config, db)?;
    if db.format.as_deref() == Some("directory") {
        return Err(ActionError::new(format!(
            "PostgreSQL database {}: the directory format cannot be streamed and is not supported by rborg yet; use custom, plain or tar",
            db.name
        )));
    }
    let names = if db.name != "all" || db.format.is_none() {
        vec![db.name.clone()]
    } else if dry_run {
        Vec::new()
    } else {
        let listed = parse_list(&capture(
            &list_command(db, &conn),
            "Querying for \"all\" PostgreSQL databases to dump",
        )?);
        if listed.is_empty() {
            return Err(ActionError::new(
                "Cannot find any PostgreSQL databases to dump.",
            ));
        }
        listed
    };
    names
        .iter()
        .map(|name| {
            Ok(DumpJob {
                label: format!("PostgreSQL database \"{name}\""),
                fifo: dump_filename(dir, Hook::Postgresql, name, db.hostname.as_deref())?,
                command: dump_command(db, &conn, name),
                keep: Vec::new(),
            })
        })
        .collect()
}

/// The restore command (reading the dump on standard input) and the `ANALYZE` that follows.
pub fn restore_commands(
    db: &Database,
    conn: &Connection,
    name: &str,
    schemas: &[String],
) -> (CommandSpec, CommandSpec) {
    let all = name == "all";
    let psql = other_str(db, "psql_command").unwrap_or("psql");
    let mut analyze: Vec<String> = ["--no-password", "--no-psqlrc", "--quiet"]
        .map(String::from)
        .to_vec();
    analyze.extend(connection_flags(conn));
    if !all {
        analyze.extend(["--dbname".to_string(), name.to_string()]);
    }
    analyze.extend(split_option(db, "analyze_options"));
    analyze.extend(["--command".to_string(), "ANALYZE".to_string()]);

    let use_psql = all || db.format.as_deref() == Some("plain");
    let mut args = vec!["--no-password".to_string()];
    if use_psql {
        args.push("--no-psqlrc".into());
    } else {
        args.extend(["--if-exists", "--exit-on-error", "--clean"].map(String::from));
    }
    if !all {
        args.extend(["--dbname".to_string(), name.to_string()]);
    }
    args.extend(connection_flags(conn));
    if other_bool(db, "no_owner", false) {
        args.push("--no-owner".into());
    }
    args.extend(split_option(db, "restore_options"));
    for schema in schemas {
        args.extend(["--schema".to_string(), schema.clone()]);
    }
    let base = if use_psql {
        psql
    } else {
        other_str(db, "pg_restore_command").unwrap_or("pg_restore")
    };
    (
        with_environment(CommandSpec::new(base, args), db, conn),
        with_environment(CommandSpec::new(psql, analyze), db, conn),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(yaml: &str) -> Database {
        serde_json::from_value(serde_json::from_str::<serde_json::Value>(yaml).unwrap()).unwrap()
    }

    #[test]
    fn dump_and_restore_command_lines_match_borgmatic() {
        let d = db(
            r#"{"name": "app", "hostname": "db1", "port": 5433, "username": "bk",
                      "password": "pw-secret", "options": "--exclude-table=big", "ssl_mode": "require"}"#,
        );
        let conn = Connection {
            hostname: d.hostname.clone(),
            port: d.port,
            username: d.username.clone(),
            password: d.password.clone(),
        };
        let dump = dump_command(&d, &conn, "app");
        assert_eq!(
            dump.display(),
            "pg_dump --no-password --clean --if-exists --host db1 --port 5433 --username bk \
             --format custom --exclude-table=big app"
        );
        assert!(dump
            .env
            .contains(&("PGPASSWORD".into(), "pw-secret".into())));
        assert!(dump.env.contains(&("PGSSLMODE".into(), "require".into())));
        let (restore, analyze) = restore_commands(&d, &conn, "app", &["s1".into()]);
        assert_eq!(
            restore.display(),
            "pg_restore --no-password --if-exists --exit-on-error --clean --dbname app \
             --host db1 --port 5433 --username bk --schema s1"
        );
        assert_eq!(
            analyze.display(),
            "psql --no-password --no-psqlrc --quiet --host db1 --port 5433 --username bk \
             --dbname app --command ANALYZE"
        );
        let all = db(r#"{"name": "all"}"#);
        assert_eq!(
            dump_command(&all, &Connection::default(), "all").display(),
            "pg_dumpall --no-password --clean --if-exists"
        );
        assert_eq!(
            restore_commands(&all, &Connection::default(), "all", &[])
                .0
                .display(),
            "psql --no-password --no-psqlrc"
        );
    }

    #[test]
    fn list_output_skips_templates() {
        let out = "postgres,postgres,UTF8,libc,C.UTF-8,C.UTF-8,,,\n\"we,ird\"\"db\",x\n\
                   template0,postgres,UTF8,libc,C,C,,,\"=c/postgres\npostgres=CTc/postgres\"\n\
                   app,postgres,UTF8,libc,C,C,,,\"=Tc/postgres\nx=CTc/postgres\"\n";
        assert_eq!(parse_list(out), ["postgres", "we,ird\"db", "app"]);
    }
}
