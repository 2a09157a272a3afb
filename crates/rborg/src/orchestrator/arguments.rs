//! borgmatic's command line: global flags, then zero or more actions, each with its flags
//! (`borgmatic/commands/arguments.py`). `rborg create prune --stats` runs two actions; no action
//! means `create prune compact check`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Flags that apply to the whole run.
#[derive(Clone, Debug, Default, Args)]
pub struct GlobalArgs {
    /// Configuration filenames or directories (default: /etc/borgmatic/config.yaml,
    /// /etc/borgmatic.d, ~/.config/borgmatic/config.yaml, ~/.config/borgmatic.d)
    #[arg(global = true, short = 'c', long = "config", value_name = "CONFIG_PATHS", num_args = 1..)]
    pub config_paths: Vec<PathBuf>,
    /// Go through the motions, but do not actually write to any repositories
    #[arg(global = true, short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Display verbose progress to the console: -2 (disabled), -1 (errors only), 0 (warnings
    /// and responses to actions, the default), 1 (info), or 2 (debug)
    #[arg(global = true, short = 'v', long, value_name = "VERBOSITY", allow_hyphen_values = true,
          value_parser = clap::value_parser!(i8).range(-2..=2))]
    pub verbosity: Option<i8>,
    /// Log verbose progress to syslog (journald): -2 (disabled, the default), -1 .. 2
    #[arg(global = true, long = "syslog-verbosity", value_name = "VERBOSITY", allow_hyphen_values = true,
          value_parser = clap::value_parser!(i8).range(-2..=2))]
    pub syslog_verbosity: Option<i8>,
    /// Log verbose progress to this file
    #[arg(global = true, long = "log-file", value_name = "LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Log file verbosity: -2 .. 2 (default 1)
    #[arg(global = true, long = "log-file-verbosity", value_name = "VERBOSITY", allow_hyphen_values = true,
          value_parser = clap::value_parser!(i8).range(-2..=2))]
    pub log_file_verbosity: Option<i8>,
    /// What monitoring hooks receive: -2 .. 2 (default 1)
    #[arg(global = true, long = "monitoring-verbosity", value_name = "VERBOSITY", allow_hyphen_values = true,
          value_parser = clap::value_parser!(i8).range(-2..=2))]
    pub monitoring_verbosity: Option<i8>,
    /// Log one JSON object per line
    #[arg(global = true, long = "log-json")]
    pub log_json: bool,
    /// Configuration file option to override with a value, e.g. --override keep_daily=3
    /// (repeatable)
    #[arg(global = true, long = "override", value_name = "OPTION=VALUE")]
    pub overrides: Vec<String>,
    /// Do not interpolate environment variables in configuration files
    #[arg(global = true, long = "no-environment-interpolation")]
    pub no_environment_interpolation: bool,
    /// Path or label of the repository to run actions on (all by default)
    #[arg(global = true, long, value_name = "REPOSITORY")]
    pub repository: Option<String>,
}

/// Flags every action may take.
#[derive(Clone, Debug, Default, Args)]
pub struct RepositoryArg {
    /// Path or label of the repository to run this action on (all by default)
    #[arg(long, value_name = "REPOSITORY")]
    pub repository: Option<String>,
}

/// Archive selection flags (`--match-archives`, `--first`, `--last`, `--sort-by`).
#[derive(Clone, Debug, Default, Args)]
pub struct ArchiveFilter {
    /// Only use archives with names matching this pattern (sh: glob by default)
    #[arg(
        short = 'a',
        long = "match-archives",
        visible_alias = "glob-archives",
        value_name = "PATTERN"
    )]
    pub match_archives: Option<String>,
    /// Comma-separated list of sorting keys
    #[arg(long = "sort-by", value_name = "KEYS")]
    pub sort_by: Option<String>,
    /// Only the first N archives after other filters
    #[arg(long, value_name = "N")]
    pub first: Option<u64>,
    /// Only the last N archives after other filters
    #[arg(long, value_name = "N")]
    pub last: Option<u64>,
}

/// The actions.
#[derive(Clone, Debug, Subcommand)]
pub enum Action {
    /// Create a new, empty Borg repository
    #[command(name = "repo-create", visible_aliases = ["rcreate", "init"])]
    RepoCreate(RepoCreateArgs),
    /// Create an archive (actually perform a backup)
    Create(CreateArgs),
    /// Prune archives according to the retention policy
    Prune(PruneArgs),
    /// Compact segments to free space
    Compact(CompactArgs),
    /// Check archives for consistency
    Check(CheckArgs),
    /// Delete an archive from a repository
    Delete(DeleteArgs),
    /// Extract files from a named archive to the current directory
    Extract(ExtractArgs),
    /// Restore database dumps from a named archive
    Restore(RestoreArgs),
    /// Mount files from a named archive as a FUSE filesystem
    Mount(MountArgs),
    /// Unmount a FUSE filesystem that was mounted with "mount"
    Umount(UmountArgs),
    /// List repository archives
    #[command(name = "repo-list", visible_alias = "rlist")]
    RepoList(ListArgs),
    /// List archive contents (or the archives, without --archive)
    List(ListArgs),
    /// Show repository summary information such as disk space used
    #[command(name = "repo-info", visible_alias = "rinfo")]
    RepoInfo(InfoArgs),
    /// Show archive summary information such as disk space used
    Info(InfoArgs),
    /// Break the repository and cache locks left behind by Borg aborting
    #[command(name = "break-lock")]
    BreakLock(RepositoryArg),
    /// Perform repository key related operations
    #[command(subcommand)]
    Key(KeyAction),
    /// Run an arbitrary Borg command with the configured repository
    Borg(BorgArgs),
}

impl Action {
    /// borgmatic's name of the action (what hooks' `when` lists).
    pub fn name(&self) -> &'static str {
        match self {
            Action::RepoCreate(_) => "repo-create",
            Action::Create(_) => "create",
            Action::Prune(_) => "prune",
            Action::Compact(_) => "compact",
            Action::Check(_) => "check",
            Action::Delete(_) => "delete",
            Action::Extract(_) => "extract",
            Action::Restore(_) => "restore",
            Action::Mount(_) => "mount",
            Action::Umount(_) => "umount",
            Action::RepoList(_) => "repo-list",
            Action::List(_) => "list",
            Action::RepoInfo(_) => "repo-info",
            Action::Info(_) => "info",
            Action::BreakLock(_) => "break-lock",
            Action::Key(_) => "key",
            Action::Borg(_) => "borg",
        }
    }

    /// The `--repository` given to this action, if any.
    pub fn repository(&self) -> Option<&str> {
        let r = match self {
            Action::RepoCreate(a) => &a.repository,
            Action::Create(a) => &a.repository,
            Action::Prune(a) => &a.repository,
            Action::Compact(a) => &a.repository,
            Action::Check(a) => &a.repository,
            Action::Delete(a) => &a.repository,
            Action::Extract(a) => &a.repository,
            Action::Restore(a) => &a.repository,
            Action::Mount(a) => &a.repository,
            Action::Umount(_) => return None,
            Action::RepoList(a) | Action::List(a) => &a.repository,
            Action::RepoInfo(a) | Action::Info(a) => &a.repository,
            Action::BreakLock(a) => a,
            Action::Key(KeyAction::Export(a)) => &a.repository,
            Action::Key(KeyAction::ChangePassphrase(a)) => a,
            Action::Borg(a) => &a.repository,
        };
        r.repository.as_deref()
    }

    /// Whether monitoring hooks ping for this action (borgmatic pings only around the actions
    /// that make or maintain backups).
    pub fn is_primary(&self) -> bool {
        matches!(
            self,
            Action::Create(_) | Action::Prune(_) | Action::Compact(_) | Action::Check(_)
        )
    }

    /// Whether the action prints JSON that the run collects into one array.
    pub fn json(&self) -> bool {
        match self {
            Action::Create(a) => a.json,
            Action::RepoList(a) | Action::List(a) => a.json,
            Action::RepoInfo(a) | Action::Info(a) => a.json,
            _ => false,
        }
    }
}

#[derive(Clone, Debug, Default, Args)]
pub struct RepoCreateArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Borg encryption mode (default: the repository's `encryption` option)
    #[arg(short = 'e', long = "encryption", value_name = "MODE")]
    pub encryption_mode: Option<String>,
    /// Create an append-only repository
    #[arg(long = "append-only")]
    pub append_only: bool,
    /// Create a repository with a fixed storage quota
    #[arg(long = "storage-quota", value_name = "QUOTA")]
    pub storage_quota: Option<String>,
    /// Create any missing parent directories of the repository directory
    #[arg(long = "make-parent-dirs")]
    pub make_parent_dirs: bool,
}

#[derive(Clone, Debug, Default, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Display progress for each file as it is backed up
    #[arg(long)]
    pub progress: bool,
    /// Display statistics of archive
    #[arg(long)]
    pub stats: bool,
    /// Show per-file details
    #[arg(long, visible_alias = "files")]
    pub list: bool,
    /// Output results as JSON
    #[arg(long)]
    pub json: bool,
    /// Add a comment text to the archive
    #[arg(long, value_name = "COMMENT")]
    pub comment: Option<String>,
}

#[derive(Clone, Debug, Default, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Display statistics of the pruned archive
    #[arg(long)]
    pub stats: bool,
    /// List archives kept/pruned
    #[arg(long)]
    pub list: bool,
}

#[derive(Clone, Debug, Default, Args)]
pub struct CompactArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Display progress as each segment is compacted
    #[arg(long)]
    pub progress: bool,
    /// Cleanup commit-only 17-byte segment files
    #[arg(long = "cleanup-commits")]
    pub cleanup_commits: bool,
    /// Minimum saved space percentage threshold for compacting a segment
    #[arg(long, value_name = "PERCENT")]
    pub threshold: Option<u32>,
}

#[derive(Clone, Debug, Default, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Display progress for each file as it is checked
    #[arg(long)]
    pub progress: bool,
    /// Attempt to repair any inconsistencies found (for interactive use)
    #[arg(long)]
    pub repair: bool,
    /// How long to check the repository before interrupting the check, in seconds
    #[arg(long = "max-duration", value_name = "SECONDS")]
    pub max_duration: Option<u64>,
    /// Only check archives with names matching this pattern
    #[arg(
        short = 'a',
        long = "match-archives",
        visible_alias = "glob-archives",
        value_name = "PATTERN"
    )]
    pub match_archives: Option<String>,
    /// Run a particular consistency check (repository, archives, data, extract or spot) instead
    /// of the configured checks (repeatable)
    #[arg(long = "only", value_name = "CHECK")]
    pub only: Vec<String>,
    /// Ignore configured check frequencies and run checks unconditionally
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Debug, Default, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Archive name, hash, or series to delete
    #[arg(long, value_name = "ARCHIVE")]
    pub archive: Option<String>,
    /// Show details for the deleted archives
    #[arg(long)]
    pub list: bool,
    /// Display statistics for the deleted archives
    #[arg(long)]
    pub stats: bool,
    #[command(flatten)]
    pub filter: ArchiveFilter,
}

#[derive(Clone, Debug, Default, Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Name of the archive to extract (or "latest")
    #[arg(long, value_name = "ARCHIVE", required = true)]
    pub archive: String,
    /// Path to extract from the archive (repeatable)
    #[arg(long = "path", visible_alias = "restore-path", value_name = "PATH")]
    pub paths: Vec<String>,
    /// Directory to extract files into (default: the current directory)
    #[arg(long = "destination", value_name = "PATH")]
    pub destination: Option<PathBuf>,
    /// Number of leading path components to strip from each extracted path, or "all"
    #[arg(long = "strip-components", value_name = "NUMBER")]
    pub strip_components: Option<String>,
    /// Display progress for each file as it is extracted
    #[arg(long)]
    pub progress: bool,
}

/// `restore` (borgmatic's `restore` action; see docs/databases.md).
#[derive(Clone, Debug, Default, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Name of the archive to restore from (or "latest")
    #[arg(long, value_name = "ARCHIVE", required = true)]
    pub archive: String,
    /// Name of a database to restore from the archive (repeatable; default: every dump in it)
    #[arg(long = "database", visible_alias = "data-source", value_name = "NAME")]
    pub databases: Vec<String>,
    /// Database hostname to restore to (default: restore_hostname or hostname of the database)
    #[arg(long, value_name = "HOSTNAME")]
    pub hostname: Option<String>,
    /// Database port to restore to
    #[arg(long, value_name = "PORT")]
    pub port: Option<i64>,
    /// Username to restore as
    #[arg(long, value_name = "USERNAME")]
    pub username: Option<String>,
    /// Password to restore with
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Name of a schema to restore (repeatable; PostgreSQL and MongoDB)
    #[arg(long = "schema", value_name = "NAME")]
    pub schemas: Vec<String>,
}

#[derive(Clone, Debug, Default, Args)]
pub struct MountArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Name of the archive to mount (or "latest"); all archives when omitted
    #[arg(long, value_name = "ARCHIVE")]
    pub archive: Option<String>,
    /// Path where the filesystem is to be mounted
    #[arg(long = "mount-point", value_name = "PATH", required = true)]
    pub mount_point: PathBuf,
    /// Path to mount from the archive (repeatable)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
    /// Stay in the foreground until unmounted
    #[arg(long)]
    pub foreground: bool,
    /// Extra Borg mount options
    #[arg(long, value_name = "OPTIONS")]
    pub options: Option<String>,
    #[command(flatten)]
    pub filter: ArchiveFilter,
}

#[derive(Clone, Debug, Default, Args)]
pub struct UmountArgs {
    /// Path of the filesystem to unmount
    #[arg(long = "mount-point", value_name = "PATH", required = true)]
    pub mount_point: PathBuf,
}

#[derive(Clone, Debug, Default, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Name of the archive whose contents to list
    #[arg(long, value_name = "ARCHIVE")]
    pub archive: Option<String>,
    /// Paths or patterns to list from the archive (repeatable)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
    /// Output only archive or path names
    #[arg(long)]
    pub short: bool,
    /// Format for the listing
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Output results as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filter: ArchiveFilter,
}

#[derive(Clone, Debug, Default, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Name of the archive to show
    #[arg(long, value_name = "ARCHIVE")]
    pub archive: Option<String>,
    /// Output results as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filter: ArchiveFilter,
}

#[derive(Clone, Debug, Subcommand)]
pub enum KeyAction {
    /// Export a copy of the repository key for safekeeping
    Export(KeyExportArgs),
    /// Change the repository passphrase
    #[command(name = "change-passphrase")]
    ChangePassphrase(RepositoryArg),
}

#[derive(Clone, Debug, Default, Args)]
pub struct KeyExportArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Export the key in a text format suitable for printing
    #[arg(long)]
    pub paper: bool,
    /// Export the key in an HTML format suitable for printing
    #[arg(long = "qr-html")]
    pub qr_html: bool,
    /// Path to export the key to (default: standard output)
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
}

#[derive(Clone, Debug, Default, Args)]
pub struct BorgArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Archive name to pass to the Borg command
    #[arg(long, value_name = "ARCHIVE")]
    pub archive: Option<String>,
    /// The Borg command and its options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub options: Vec<String>,
}

/// rborg's top level: global flags and one action (used to parse each segment of the command
/// line, and for `--help`).
#[derive(Debug, Parser)]
#[command(
    name = "rborg",
    version,
    about = "Simple, configuration-driven backups with \
    BorgBackup 1.2 repositories, natively (borgmatic compatible)"
)]
pub(crate) struct OneAction {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    action: Option<Action>,
}

/// A parsed command line.
#[derive(Debug)]
pub struct Arguments {
    pub global: GlobalArgs,
    pub actions: Vec<Action>,
}

/// The action names and aliases that start a new action on the command line.
fn action_names() -> Vec<String> {
    let cmd = OneAction::command();
    cmd.get_subcommands()
        .flat_map(|s| {
            std::iter::once(s.get_name().to_string()).chain(s.get_all_aliases().map(str::to_string))
        })
        .collect()
}

/// Whether `flag` (as written) takes a value in the global flags or in `action`'s flags, so
/// that a following action name is that value rather than a new action.
fn takes_value(flag: &str, action: Option<&str>) -> bool {
    if flag.contains('=') {
        return false;
    }
    let cmd = OneAction::command();
    let find = |c: &clap::Command| {
        c.get_arguments().any(|a| {
            let long = flag.strip_prefix("--").is_some_and(|l| {
                a.get_long() == Some(l) || a.get_all_aliases().is_some_and(|al| al.contains(&l))
            });
            let short =
                flag.len() == 2 && flag.starts_with('-') && a.get_short() == flag.chars().nth(1);
            (long || short) && a.get_action().takes_values()
        })
    };
    find(&cmd)
        || action
            .and_then(|name| cmd.find_subcommand(name).cloned())
            .is_some_and(|sub| find(&sub))
}

/// Parses rborg's command line (`args` without the program name). Errors are clap's, printed
/// by the caller.
pub fn parse(args: Vec<OsString>) -> Result<Arguments, clap::Error> {
    let names = action_names();
    let texts: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // split at action names (not when the previous flag wants a value; `borg` takes the rest)
    let mut segments: Vec<Vec<OsString>> = vec![Vec::new()];
    let mut current_action: Option<String> = None;
    let mut rest_is_borg = false;
    for (i, arg) in args.iter().enumerate() {
        let text = &texts[i];
        let value_of_previous = i > 0 && takes_value(&texts[i - 1], current_action.as_deref());
        if !rest_is_borg && !value_of_previous && names.iter().any(|n| n == text) {
            segments.push(Vec::new());
            current_action = Some(text.clone());
            rest_is_borg = text == "borg";
        }
        segments.last_mut().expect("one segment").push(arg.clone());
    }
    let mut global = None;
    let mut actions = Vec::new();
    for (i, segment) in segments.into_iter().enumerate() {
        if i > 0 && segment.is_empty() {
            continue;
        }
        let argv = std::iter::once(OsString::from("rborg")).chain(segment);
        let matches = OneAction::command().try_get_matches_from(argv)?;
        let parsed = OneAction::from_arg_matches(&matches)?;
        if i == 0 {
            global = Some(parsed.global);
        } else {
            // flags written after an action apply globally too
            merge_global(global.as_mut().expect("first segment"), parsed.global);
        }
        if let Some(action) = parsed.action {
            actions.push(action);
        }
    }
    let global = global.unwrap_or_default();
    if actions.is_empty() {
        actions = vec![
            Action::Create(CreateArgs::default()),
            Action::Prune(PruneArgs::default()),
            Action::Compact(CompactArgs::default()),
            Action::Check(CheckArgs::default()),
        ];
    }
    Ok(Arguments { global, actions })
}

fn merge_global(into: &mut GlobalArgs, from: GlobalArgs) {
    into.config_paths.extend(from.config_paths);
    into.dry_run |= from.dry_run;
    into.verbosity = from.verbosity.or(into.verbosity);
    into.syslog_verbosity = from.syslog_verbosity.or(into.syslog_verbosity);
    into.log_file = from.log_file.or(into.log_file.take());
    into.log_file_verbosity = from.log_file_verbosity.or(into.log_file_verbosity);
    into.monitoring_verbosity = from.monitoring_verbosity.or(into.monitoring_verbosity);
    into.log_json |= from.log_json;
    into.overrides.extend(from.overrides);
    into.no_environment_interpolation |= from.no_environment_interpolation;
    into.repository = from.repository.or(into.repository.take());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Arguments {
        parse(args.iter().map(OsString::from).collect()).expect("parses")
    }

    #[test]
    fn no_action_means_the_default_four() {
        let a = p(&["-c", "x.yaml", "-v", "1"]);
        let names: Vec<_> = a.actions.iter().map(Action::name).collect();
        assert_eq!(names, ["create", "prune", "compact", "check"]);
        assert_eq!(a.global.config_paths, [PathBuf::from("x.yaml")]);
        assert_eq!(a.global.verbosity, Some(1));
    }

    #[test]
    fn several_actions_with_their_flags() {
        let a = p(&[
            "--dry-run",
            "create",
            "--stats",
            "prune",
            "--list",
            "-v",
            "2",
        ]);
        assert!(a.global.dry_run);
        assert_eq!(a.global.verbosity, Some(2));
        match &a.actions[..] {
            [Action::Create(c), Action::Prune(pr)] => {
                assert!(c.stats);
                assert!(pr.list);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_action_name_as_a_flag_value_is_a_value() {
        let a = p(&["extract", "--archive", "list", "--path", "check"]);
        match &a.actions[..] {
            [Action::Extract(e)] => {
                assert_eq!(e.archive, "list");
                assert_eq!(e.paths, ["check"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn aliases_and_borg_passthrough() {
        let a = p(&["init", "-e", "repokey", "borg", "list", "--short", "create"]);
        match &a.actions[..] {
            [Action::RepoCreate(r), Action::Borg(b)] => {
                assert_eq!(r.encryption_mode.as_deref(), Some("repokey"));
                assert_eq!(b.options, ["list", "--short", "create"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn global_flags_after_an_action() {
        let a = p(&["-c", "f.yaml", "create", "--verbosity", "1", "--stats"]);
        assert_eq!(a.global.verbosity, Some(1));
        assert_eq!(a.global.config_paths, [PathBuf::from("f.yaml")]);
        let b = p(&["borg", "list", "--verbosity", "1"]);
        match &b.actions[..] {
            [Action::Borg(x)] => assert_eq!(x.options, ["list", "--verbosity", "1"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn negative_verbosity() {
        let a = p(&["--verbosity", "-2", "--syslog-verbosity", "1"]);
        assert_eq!(a.global.verbosity, Some(-2));
        assert_eq!(a.global.syslog_verbosity, Some(1));
    }
}
