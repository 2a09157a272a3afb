//! The normalised configuration as typed Rust values.
//!
//! After loading and normalisation both the sectioned 1.7 form and the flat 1.8+/2.x form
//! are the same flat mapping (see [`crate::normalize`]), which deserialises into [`Config`].
//! Field names are borgmatic's option names (`borgmatic/config/schema.yaml`); options the
//! actions do not use yet are kept, untyped, in [`Config::other`], so nothing valid is lost.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as Json;

/// One borgmatic configuration file, validated and normalised.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// `constants:` used for `{name}` interpolation (already applied to the other values).
    pub constants: BTreeMap<String, Json>,
    /// Paths to back up.
    pub source_directories: Vec<String>,
    /// Fail if a source directory does not exist.
    pub source_directories_must_exist: Option<bool>,
    /// The repositories, in order; every action runs for each.
    pub repositories: Vec<Repository>,
    /// Directory relative paths are relative to.
    pub working_directory: Option<String>,
    /// `borg create --one-file-system`.
    pub one_file_system: Option<bool>,
    /// `--numeric-ids` (formerly `numeric_owner`).
    pub numeric_ids: Option<bool>,
    /// Store atime.
    pub atime: Option<bool>,
    /// Store ctime.
    pub ctime: Option<bool>,
    /// Store birthtime.
    pub birthtime: Option<bool>,
    /// `--read-special`.
    pub read_special: Option<bool>,
    /// Store BSD flags (formerly `bsd_flags`).
    pub flags: Option<bool>,
    /// `--files-cache` mode, e.g. `ctime,size,inode`.
    pub files_cache: Option<String>,
    /// The local borg executable.
    pub local_path: Option<String>,
    /// The remote borg executable (`--remote-path`).
    pub remote_path: Option<String>,
    /// Borg patterns (`--patterns-from` content).
    pub patterns: Vec<String>,
    /// Pattern files.
    pub patterns_from: Vec<String>,
    /// `--exclude` patterns.
    pub exclude_patterns: Vec<String>,
    /// `--exclude-from` files.
    pub exclude_from: Vec<String>,
    /// `--exclude-caches`.
    pub exclude_caches: Option<bool>,
    /// `--exclude-if-present` names.
    pub exclude_if_present: Vec<String>,
    /// `--keep-exclude-tags`.
    pub keep_exclude_tags: Option<bool>,
    /// `--exclude-nodump`.
    pub exclude_nodump: Option<bool>,
    /// Deprecated borgmatic state directory.
    pub borgmatic_source_directory: Option<String>,
    /// borgmatic runtime directory.
    pub user_runtime_directory: Option<String>,
    /// borgmatic state directory (check times).
    pub user_state_directory: Option<String>,
    /// Command printing the passphrase.
    pub encryption_passcommand: Option<String>,
    /// The passphrase (may be a `{credential ...}` reference).
    pub encryption_passphrase: Option<String>,
    /// Seconds between checkpoints.
    pub checkpoint_interval: Option<i64>,
    /// Bytes between checkpoints.
    pub checkpoint_volume: Option<i64>,
    /// `--chunker-params`.
    pub chunker_params: Option<String>,
    /// `--compression`, e.g. `zstd,3`.
    pub compression: Option<String>,
    /// `--upload-ratelimit` in KiB/s.
    pub upload_rate_limit: Option<i64>,
    /// Retries of a failing backup.
    pub retries: Option<i64>,
    /// Seconds between retries.
    pub retry_wait: Option<i64>,
    /// `TMPDIR` for borg.
    pub temporary_directory: Option<String>,
    /// `BORG_RSH`.
    pub ssh_command: Option<String>,
    /// `BORG_BASE_DIR`.
    pub borg_base_directory: Option<String>,
    /// `BORG_CONFIG_DIR`.
    pub borg_config_directory: Option<String>,
    /// `BORG_CACHE_DIR`.
    pub borg_cache_directory: Option<String>,
    /// `BORG_FILES_CACHE_TTL`.
    pub borg_files_cache_ttl: Option<i64>,
    /// `BORG_SECURITY_DIR`.
    pub borg_security_directory: Option<String>,
    /// `BORG_KEYS_DIR`.
    pub borg_keys_directory: Option<String>,
    /// `BORG_KEY_FILE`.
    pub borg_key_file: Option<String>,
    /// `--umask` (as written in YAML: `0077` is decimal 77 in YAML 1.2, `0o077` is octal).
    pub umask: Option<i64>,
    /// `--lock-wait` seconds.
    pub lock_wait: Option<i64>,
    /// Archive name with placeholders.
    pub archive_name_format: Option<String>,
    /// `--match-archives` / `--glob-archives` pattern.
    pub match_archives: Option<String>,
    /// `BORG_RELOCATED_REPO_ACCESS_IS_OK`.
    pub relocated_repo_access_is_ok: Option<bool>,
    /// `BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK`.
    pub unknown_unencrypted_repo_access_is_ok: Option<bool>,
    /// `BORG_CHECK_I_KNOW_WHAT_I_AM_DOING`.
    pub check_i_know_what_i_am_doing: Option<bool>,
    /// Extra borg flags per action (`create: --foo`).
    pub extra_borg_options: BTreeMap<String, String>,
    /// Retention: `--keep-within`.
    pub keep_within: Option<String>,
    /// Retention counts.
    pub keep_secondly: Option<i64>,
    /// Retention counts.
    pub keep_minutely: Option<i64>,
    /// Retention counts.
    pub keep_hourly: Option<i64>,
    /// Retention counts.
    pub keep_daily: Option<i64>,
    /// Retention counts.
    pub keep_weekly: Option<i64>,
    /// Retention counts.
    pub keep_monthly: Option<i64>,
    /// Retention counts.
    pub keep_yearly: Option<i64>,
    /// Retention counts.
    pub keep_13weekly: Option<i64>,
    /// Retention counts.
    pub keep_3monthly: Option<i64>,
    /// Deprecated archive name prefix for prune and check.
    pub prefix: Option<String>,
    /// Consistency checks.
    pub checks: Vec<Check>,
    /// Repositories to check (labels or paths); all when empty.
    pub check_repositories: Vec<String>,
    /// Check only the last N archives.
    pub check_last: Option<i64>,
    /// Command hooks (2.x form; 1.7 `before_*`/`after_*`/`on_error` are normalised into it).
    pub commands: Vec<CommandHook>,
    /// PostgreSQL dumps.
    pub postgresql_databases: Vec<Database>,
    /// MariaDB dumps.
    pub mariadb_databases: Vec<Database>,
    /// MySQL dumps.
    pub mysql_databases: Vec<Database>,
    /// SQLite dumps.
    pub sqlite_databases: Vec<Database>,
    /// MongoDB dumps.
    pub mongodb_databases: Vec<Database>,
    /// Healthchecks monitoring.
    pub healthchecks: Option<Healthchecks>,
    /// ntfy monitoring.
    pub ntfy: Option<Ntfy>,
    /// Cronitor monitoring.
    pub cronitor: Option<PingUrl>,
    /// Cronhub monitoring (borgmatic 1.7.x; dropped from borgmatic 2.x's schema).
    pub cronhub: Option<PingUrl>,
    /// PagerDuty monitoring.
    pub pagerduty: Option<PagerDuty>,
    /// Uptime Kuma monitoring.
    pub uptime_kuma: Option<UptimeKuma>,
    /// Grafana Loki log shipping.
    pub loki: Option<Loki>,
    /// Every other option, untyped (verbosity, logging, other hooks...).
    #[serde(flatten)]
    pub other: BTreeMap<String, Json>,
}

/// A repository (`repositories:` entry).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Repository {
    /// Local path or `ssh://` URL.
    pub path: String,
    /// Name used in logs and with `--repository`.
    pub label: Option<String>,
    /// Encryption mode for `repo-create`.
    pub encryption: Option<String>,
    /// Create append-only.
    pub append_only: Option<bool>,
    /// `--storage-quota`.
    pub storage_quota: Option<String>,
    /// Create missing parent directories.
    pub make_parent_directories: Option<bool>,
    /// Options overriding the global ones for this repository (e.g. `remote_path`).
    #[serde(flatten)]
    pub overrides: BTreeMap<String, Json>,
}

/// A consistency check.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Check {
    /// `repository`, `archives`, `data`, `extract`, `spot` or `disabled`.
    pub name: String,
    /// `always` (default) or a duration such as `2 weeks`.
    pub frequency: Option<String>,
    /// Days of the week the check may run on.
    pub only_run_on: Vec<String>,
    /// Spot-check tolerances and other per-check options.
    #[serde(flatten)]
    pub other: BTreeMap<String, Json>,
}

/// A 2.x `commands:` entry: run `run` before or after `before`/`after` (action, repository,
/// configuration, everything, error), restricted to the actions in `when`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct CommandHook {
    /// The point to run before.
    pub before: Option<String>,
    /// The point to run after (`error` runs on failure).
    pub after: Option<String>,
    /// Actions the hook applies to; all when empty.
    pub when: Vec<String>,
    /// Shell commands.
    pub run: Vec<String>,
    /// For `after` hooks: run only when the scope ended in one of these states (`finish`,
    /// `fail`); all states when empty. The 1.7 `after_*` hooks get `finish` (see
    /// `LoadedConfig`), since 1.7 ran them only on success.
    pub states: Vec<String>,
    /// Other keys.
    #[serde(flatten)]
    pub other: BTreeMap<String, Json>,
}

/// A database dump hook entry; the common keys are typed, the rest kept by name.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Database {
    /// Database name (`all` for all).
    pub name: String,
    /// Label in the dump path.
    pub label: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// TCP port.
    pub port: Option<i64>,
    /// User name.
    pub username: Option<String>,
    /// Password (may be a `{credential ...}` reference).
    pub password: Option<String>,
    /// SQLite file path.
    pub path: Option<String>,
    /// Dump format.
    pub format: Option<String>,
    /// Extra dump options.
    pub options: Option<String>,
    /// Every other key.
    #[serde(flatten)]
    pub other: BTreeMap<String, Json>,
}

/// Healthchecks.io (or compatible) monitoring.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Healthchecks {
    /// Ping URL or UUID.
    pub ping_url: String,
    /// Verify the TLS certificate.
    pub verify_tls: Option<bool>,
    /// Send the log tail with finish/fail pings.
    pub send_logs: Option<bool>,
    /// Maximum ping body size in bytes.
    pub ping_body_limit: Option<i64>,
    /// `start`, `finish`, `fail`, `log`.
    pub states: Vec<String>,
    /// Create the check from the slug.
    pub create_slug: Option<bool>,
}

/// ntfy monitoring.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Ntfy {
    /// Topic name.
    pub topic: String,
    /// Server URL (default `https://ntfy.sh`).
    pub server: Option<String>,
    /// Basic-auth user.
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<String>,
    /// Bearer token.
    pub access_token: Option<String>,
    /// Message for the start state (title, message, priority, tags).
    pub start: Option<BTreeMap<String, Json>>,
    /// Message for the finish state.
    pub finish: Option<BTreeMap<String, Json>>,
    /// Message for the fail state.
    pub fail: Option<BTreeMap<String, Json>>,
    /// States to notify on (default `fail`).
    pub states: Vec<String>,
}

/// A monitoring hook that only has a ping URL (Cronitor, Cronhub).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PingUrl {
    /// The URL.
    pub ping_url: String,
}

/// PagerDuty monitoring.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PagerDuty {
    /// Events API v2 integration key.
    pub integration_key: String,
    /// Include the log tail.
    pub send_logs: Option<bool>,
}

/// Uptime Kuma push monitoring.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct UptimeKuma {
    /// Push URL.
    pub push_url: String,
    /// States to push on.
    pub states: Vec<String>,
    /// Verify the TLS certificate.
    pub verify_tls: Option<bool>,
}

/// Grafana Loki log shipping.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Loki {
    /// Push API URL.
    pub url: String,
    /// Stream labels (`__hostname`, `__config`... placeholders allowed).
    pub labels: BTreeMap<String, String>,
    /// Also send logs (default true).
    pub send_logs: Option<bool>,
    /// TLS options.
    pub tls: Option<BTreeMap<String, Json>>,
}
