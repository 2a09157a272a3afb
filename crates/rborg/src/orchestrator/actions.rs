//! The actions: each turns the configuration and its flags into the borg operation borgmatic
//! would run (`borgmatic/borg/<action>.py`, for borg 1.2) and runs it in-process.

use std::io::Write;
use std::path::{Path, PathBuf};

use rborg_config::{Config, Repository};

use super::arguments::{
    Action, ArchiveFilter, CheckArgs, CompactArgs, CreateArgs, ExtractArgs, InfoArgs, KeyAction,
    ListArgs, MountArgs, PruneArgs, RepoCreateArgs,
};
use super::borg_call::{ActionError, Borg};
use super::check_state;
use super::log;

/// borgmatic's default archive name format for borg 1.x.
pub const DEFAULT_ARCHIVE_NAME_FORMAT: &str = "{hostname}-{now:%Y-%m-%dT%H:%M:%S.%f}";

/// What one action needs to know about where it runs.
pub struct ActionContext<'a> {
    /// The repository.
    pub repository: &'a Repository,
    /// The configuration as it applies to the repository.
    pub config: &'a Config,
    /// `--dry-run`.
    pub dry_run: bool,
    /// JSON the action produced, collected for the run's output.
    pub json: &'a mut Vec<serde_json::Value>,
}

/// Runs `action` for one repository.
pub fn run(action: &Action, cx: &mut ActionContext<'_>) -> Result<(), ActionError> {
    let borg = Borg::new(cx.config)?;
    let repo = cx.repository.path.clone();
    match action {
        Action::RepoCreate(a) => repo_create(&borg, cx, a),
        Action::Create(a) => create(&borg, cx, a),
        Action::Prune(a) => prune(&borg, cx, a),
        Action::Compact(a) => compact(&borg, cx, a),
        Action::Check(a) => check(&borg, cx, a),
        Action::Delete(a) => {
            log::info("Deleting archives");
            if a.archive.is_none()
                && a.filter.match_archives.is_none()
                && a.filter.first.is_none()
                && a.filter.last.is_none()
            {
                return Err(ActionError::new(
                    "delete needs --archive or an archive filter (--match-archives, --first, --last); \
                     to delete the whole repository use borg delete",
                ));
            }
            let mut args = vec!["delete".to_string()];
            args.extend(borg.common_flags());
            args.extend(flag_if(cx.dry_run, "--dry-run"));
            args.extend(flag_if(a.list, "--list"));
            args.extend(flag_if(a.stats, "--stats"));
            args.extend(filter_flags(&a.filter, None));
            args.extend(borg.extra_options("delete"));
            args.push(archive_location(&repo, a.archive.as_deref()));
            borg.run(args, false).map(drop)
        }
        Action::Extract(a) => extract(&borg, cx, a),
        Action::Restore(a) => {
            let archive = resolve_archive(&borg, cx, &a.archive)?;
            super::databases::restore::restore(&borg, cx, a, &archive)
        }
        Action::Mount(a) => mount(&borg, cx, a),
        Action::Umount(a) => {
            log::info(&format!(
                "Unmounting mount point {}",
                a.mount_point.display()
            ));
            let args = vec!["umount".to_string(), a.mount_point.display().to_string()];
            borg.run(args, false).map(drop)
        }
        Action::RepoList(a) => list(&borg, cx, a, true),
        Action::List(a) => list(&borg, cx, a, a.archive.is_none()),
        Action::RepoInfo(a) => info(&borg, cx, a, true),
        Action::Info(a) => info(&borg, cx, a, false),
        Action::BreakLock(_) => {
            log::info("Breaking repository and cache locks");
            let mut args = vec!["break-lock".to_string()];
            args.extend(borg.common_flags());
            args.push(repo);
            borg.run(args, false).map(drop)
        }
        Action::Key(KeyAction::Export(a)) => {
            log::info("Exporting repository key");
            let mut args = vec!["key".to_string(), "export".to_string()];
            args.extend(borg.common_flags());
            args.extend(flag_if(a.paper, "--paper"));
            args.extend(flag_if(a.qr_html, "--qr-html"));
            args.push(repo);
            args.extend(a.path.clone());
            if cx.dry_run {
                log::info("Skipping key export (dry run)");
                return Ok(());
            }
            borg.run(args, false).map(drop)
        }
        Action::Key(KeyAction::ChangePassphrase(_)) => {
            log::info("Changing repository passphrase");
            let mut args = vec!["key".to_string(), "change-passphrase".to_string()];
            args.extend(borg.common_flags());
            args.push(repo);
            if cx.dry_run {
                log::info("Skipping passphrase change (dry run)");
                return Ok(());
            }
            borg.run(args, false).map(drop)
        }
        Action::Borg(a) => {
            log::info("Running arbitrary Borg command");
            let mut args = a.options.clone();
            if args.is_empty() {
                return Err(ActionError::new(
                    "borg: give a borg command, e.g. `borg list`",
                ));
            }
            // the repository (and archive) as the command's location, as borgmatic does
            std::env::set_var("BORG_REPO", &repo);
            if let Some(archive) = &a.archive {
                args.push(format!("{repo}::{}", resolve_archive(&borg, cx, archive)?));
            }
            let result = borg.run(args, false).map(drop);
            std::env::remove_var("BORG_REPO");
            result
        }
    }
}

fn flag_if(condition: bool, flag: &str) -> Option<String> {
    condition.then(|| flag.to_string())
}

/// `repo::archive`, or `repo` alone.
fn archive_location(repo: &str, archive: Option<&str>) -> String {
    match archive {
        Some(a) => format!("{repo}::{a}"),
        None => repo.to_string(),
    }
}

/// The archive glob that matches the archives this configuration makes: `match_archives`, or
/// `archive_name_format` with its `{now}`, `{utcnow}` and `{pid}` placeholders turned into `*`
/// (borgmatic's `make_match_archives_flags` for borg 1.x: `--glob-archives`). `None` when it
/// would match every archive.
pub fn archive_glob(config: &Config) -> Option<String> {
    if let Some(m) = &config.match_archives {
        if matches!(m.as_str(), "*" | "re:.*" | "sh:*") {
            return None;
        }
        return Some(sh_glob(m));
    }
    let format = config
        .archive_name_format
        .as_deref()
        .unwrap_or(DEFAULT_ARCHIVE_NAME_FORMAT);
    let derived = replace_ephemeral_placeholders(format);
    (derived != "*").then_some(derived)
}

/// A borgmatic `match_archives` pattern as borg 1.2's `--glob-archives` takes it (borg 1.x
/// only has shell globs, so the `sh:` style prefix is dropped).
fn sh_glob(pattern: &str) -> String {
    pattern.strip_prefix("sh:").unwrap_or(pattern).to_string()
}

/// `{now...}`, `{utcnow...}`, `{pid...}` → `*`.
fn replace_ephemeral_placeholders(format: &str) -> String {
    let mut out = String::new();
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_end];
        let spec_end = after[name_end..]
            .find(|c: char| !(c.is_alphanumeric() || "_:%.-".contains(c)))
            .map(|i| i + name_end);
        match spec_end {
            Some(end)
                if after[end..].starts_with('}') && matches!(name, "now" | "utcnow" | "pid") =>
            {
                out.push('*');
                rest = &after[end + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn glob_flags(config: &Config) -> Vec<String> {
    archive_glob(config)
        .map(|g| vec!["--glob-archives".to_string(), g])
        .unwrap_or_default()
}

/// The archive filter flags of an action, falling back to the configured glob.
fn filter_flags(filter: &ArchiveFilter, config: Option<&Config>) -> Vec<String> {
    let mut flags = Vec::new();
    match (&filter.match_archives, config) {
        (Some(m), _) => flags.extend(["--glob-archives".to_string(), sh_glob(m)]),
        (None, Some(config)) => flags.extend(glob_flags(config)),
        (None, None) => {}
    }
    if let Some(s) = &filter.sort_by {
        flags.extend(["--sort-by".to_string(), s.clone()]);
    }
    if let Some(n) = filter.first {
        flags.extend(["--first".to_string(), n.to_string()]);
    }
    if let Some(n) = filter.last {
        flags.extend(["--last".to_string(), n.to_string()]);
    }
    flags
}

/// `latest` → the newest archive this configuration made (borgmatic's
/// `repo_list.resolve_archive_name`); any other name as given.
fn resolve_archive(
    borg: &Borg<'_>,
    cx: &ActionContext<'_>,
    archive: &str,
) -> Result<String, ActionError> {
    if archive != "latest" {
        return Ok(archive.to_string());
    }
    let mut args = vec!["list".to_string(), "--short".to_string()];
    args.extend(borg.probe_flags());
    args.extend(glob_flags(cx.config));
    args.extend(["--last".to_string(), "1".to_string()]);
    args.push(cx.repository.path.clone());
    let out = borg.run_captured(args)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let name = text.lines().last().map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return Err(ActionError::new("No archives found in the repository"));
    }
    log::debug(&format!("Latest archive is {name}"));
    Ok(name.to_string())
}

fn repo_create(
    borg: &Borg<'_>,
    cx: &mut ActionContext<'_>,
    a: &RepoCreateArgs,
) -> Result<(), ActionError> {
    log::info(&format!("Creating repository{}", dry_label(cx.dry_run)));
    // an existing repository is left alone, as borgmatic does
    let mut probe = vec!["info".to_string(), "--json".to_string()];
    probe.extend(borg.probe_flags());
    probe.push(cx.repository.path.clone());
    let exists = {
        let _quiet = log::quiet();
        borg.run_captured(probe).is_ok()
    };
    if exists {
        log::info("Repository already exists. Skipping creation.");
        return Ok(());
    }
    let encryption = a
        .encryption_mode
        .clone()
        .or_else(|| cx.repository.encryption.clone())
        .or_else(|| {
            cx.config
                .other
                .get("encryption")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .ok_or_else(|| {
            ActionError::new(
                "An encryption mode is required: give --encryption or set `encryption` on the repository",
            )
        })?;
    if cx.dry_run {
        return Ok(());
    }
    let mut args = vec!["init".to_string(), "--encryption".to_string(), encryption];
    let append_only = a.append_only || cx.repository.append_only == Some(true);
    args.extend(flag_if(append_only, "--append-only"));
    if let Some(q) = a
        .storage_quota
        .clone()
        .or_else(|| cx.repository.storage_quota.clone())
    {
        args.extend(["--storage-quota".to_string(), q]);
    }
    let parents = a.make_parent_dirs || cx.repository.make_parent_directories == Some(true);
    args.extend(flag_if(parents, "--make-parent-dirs"));
    args.extend(borg.common_flags());
    args.extend(borg.extra_options("init"));
    args.push(cx.repository.path.clone());
    borg.run(args, false).map(drop)
}

fn dry_label(dry_run: bool) -> &'static str {
    if dry_run {
        " (dry run; not making any changes)"
    } else {
        ""
    }
}

/// Writes `lines` to a temporary file for `--patterns-from`/`--exclude-from`.
fn temp_lines(lines: &[String]) -> Result<tempfile::NamedTempFile, ActionError> {
    let mut file = tempfile::Builder::new()
        .prefix("rborg-patterns-")
        .tempfile()
        .map_err(|e| ActionError::new(format!("cannot write a patterns file: {e}")))?;
    for line in lines {
        writeln!(file, "{line}")
            .map_err(|e| ActionError::new(format!("cannot write a patterns file: {e}")))?;
    }
    file.flush()
        .map_err(|e| ActionError::new(format!("cannot write a patterns file: {e}")))?;
    Ok(file)
}

/// `~/x` with `$HOME` (borgmatic expands `~` in paths it is given).
pub fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ if path == "~" => std::env::var("HOME").unwrap_or_else(|_| path.to_string()),
        _ => path.to_string(),
    }
}

fn create(borg: &Borg<'_>, cx: &mut ActionContext<'_>, a: &CreateArgs) -> Result<(), ActionError> {
    let c = cx.config;
    log::info(&format!("Creating archive{}", dry_label(cx.dry_run)));
    let working = c.working_directory.as_deref().map(PathBuf::from);
    let resolve = |p: &str| -> PathBuf {
        let p = PathBuf::from(expand_home(p));
        match &working {
            Some(w) if p.is_relative() => w.join(p),
            _ => p,
        }
    };
    let mut sources: Vec<String> = Vec::new();
    for source in &c.source_directories {
        let expanded = expand_home(source);
        let has_glob = expanded.contains(['*', '?', '[']);
        if has_glob {
            let matches = glob_paths(&resolve(&expanded));
            if matches.is_empty() {
                sources.push(expanded);
            } else {
                sources.extend(matches.into_iter().map(|p| p.display().to_string()));
            }
        } else {
            sources.push(expanded);
        }
    }
    if c.source_directories_must_exist == Some(true) {
        let missing: Vec<&String> = sources.iter().filter(|s| !resolve(s).exists()).collect();
        if !missing.is_empty() {
            return Err(ActionError::new(format!(
                "Source directories do not exist: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    // database dumps stream through named pipes under one more root (docs/databases.md)
    let dumps = super::databases::start_dumps(c, cx.dry_run)?;
    if let Some(d) = &dumps {
        // once only: a pipe read twice would wait forever for a second writer (borgmatic also
        // deduplicates nested source directories)
        if !sources.iter().any(|s| d.root.starts_with(resolve(s))) {
            sources.push(d.root.display().to_string());
        }
    }
    // roots and patterns in one patterns file, excludes in another, as borgmatic 1.9+ does
    let mut patterns: Vec<String> = sources.iter().map(|s| format!("R {s}")).collect();
    patterns.extend(c.patterns.iter().cloned());
    let patterns_file = temp_lines(&patterns)?;
    let exclude_file = if c.exclude_patterns.is_empty() {
        None
    } else {
        Some(temp_lines(&c.exclude_patterns)?)
    };
    let mut args = vec!["create".to_string()];
    args.extend([
        "--patterns-from".to_string(),
        patterns_file.path().display().to_string(),
    ]);
    for f in &c.patterns_from {
        args.extend(["--patterns-from".to_string(), expand_home(f)]);
    }
    if let Some(f) = &exclude_file {
        args.extend(["--exclude-from".to_string(), f.path().display().to_string()]);
    }
    for f in &c.exclude_from {
        args.extend(["--exclude-from".to_string(), expand_home(f)]);
    }
    args.extend(flag_if(c.exclude_caches == Some(true), "--exclude-caches"));
    for name in &c.exclude_if_present {
        args.extend(["--exclude-if-present".to_string(), name.clone()]);
    }
    args.extend(flag_if(
        c.keep_exclude_tags == Some(true),
        "--keep-exclude-tags",
    ));
    args.extend(flag_if(c.exclude_nodump == Some(true), "--exclude-nodump"));
    if let Some(i) = c.checkpoint_interval {
        args.extend(["--checkpoint-interval".to_string(), i.to_string()]);
    }
    if let Some(p) = &c.chunker_params {
        args.extend(["--chunker-params".to_string(), p.clone()]);
    }
    if let Some(comp) = &c.compression {
        args.extend(["--compression".to_string(), comp.clone()]);
    }
    if let Some(r) = c.upload_rate_limit {
        args.extend(["--upload-ratelimit".to_string(), r.to_string()]);
    }
    args.extend(flag_if(
        c.one_file_system == Some(true),
        "--one-file-system",
    ));
    args.extend(flag_if(c.numeric_ids == Some(true), "--numeric-ids"));
    args.extend(flag_if(c.atime == Some(true), "--atime"));
    args.extend(flag_if(c.ctime == Some(false), "--noctime"));
    args.extend(flag_if(c.birthtime == Some(false), "--nobirthtime"));
    args.extend(flag_if(
        c.read_special == Some(true) || dumps.is_some(),
        "--read-special",
    ));
    args.extend(flag_if(c.flags == Some(false), "--noflags"));
    if let Some(mode) = &c.files_cache {
        args.extend(["--files-cache".to_string(), mode.clone()]);
    }
    args.extend(borg.common_flags());
    if a.list {
        args.extend([
            "--list".to_string(),
            "--filter".to_string(),
            if cx.dry_run { "AMEx+-" } else { "AMEx-" }.to_string(),
        ]);
    }
    args.extend(flag_if(cx.dry_run, "--dry-run"));
    args.extend(flag_if(a.stats && !a.json && !cx.dry_run, "--stats"));
    args.extend(flag_if(a.progress, "--progress"));
    args.extend(flag_if(a.json, "--json"));
    if let Some(comment) = &a.comment {
        args.extend(["--comment".to_string(), comment.clone()]);
    }
    args.extend(borg.extra_options("create"));
    let format = c
        .archive_name_format
        .as_deref()
        .unwrap_or(DEFAULT_ARCHIVE_NAME_FORMAT);
    args.push(format!("{}::{format}", cx.repository.path));
    let cwd = working.as_deref();
    let outcome = if a.json {
        borg.run_captured(args)
    } else {
        match cwd {
            Some(dir) => borg.run_at(args, dir),
            None => borg.run(args, false),
        }
    };
    let outcome = super::databases::finish_dumps(dumps, outcome)?;
    collect_json(cx, &outcome.stdout)?;
    drop(patterns_file);
    drop(exclude_file);
    Ok(())
}

/// Paths matching the shell glob `pattern` (for `source_directories` with globs, which
/// borgmatic expands with Python's `glob`), sorted.
fn glob_paths(pattern: &Path) -> Vec<PathBuf> {
    let text = pattern.display().to_string();
    let absolute = text.starts_with('/');
    let mut current = vec![if absolute {
        PathBuf::from("/")
    } else {
        PathBuf::from(".")
    }];
    for part in text.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for base in &current {
            if part.contains(['*', '?', '[']) {
                let Ok(entries) = std::fs::read_dir(base) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.') || part.starts_with('.'))
                    .filter(|n| rborg_config::glob_match(n, part))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| base.join(n)));
            } else {
                let p = base.join(part);
                if p.symlink_metadata().is_ok() {
                    next.push(p);
                }
            }
        }
        current = next;
    }
    current
        .into_iter()
        .map(|p| p.strip_prefix("./").map(Path::to_path_buf).unwrap_or(p))
        .collect()
}

fn collect_json(cx: &mut ActionContext<'_>, stdout: &[u8]) -> Result<(), ActionError> {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_slice(stdout)
        .map_err(|e| ActionError::new(format!("borg printed invalid JSON: {e}")))?;
    cx.json.push(value);
    Ok(())
}

fn prune(borg: &Borg<'_>, cx: &mut ActionContext<'_>, a: &PruneArgs) -> Result<(), ActionError> {
    let c = cx.config;
    log::info(&format!("Pruning archives{}", dry_label(cx.dry_run)));
    let mut args = vec!["prune".to_string()];
    let rules: [(&str, Option<String>); 11] = [
        ("--keep-within", c.keep_within.clone()),
        ("--keep-secondly", c.keep_secondly.map(|v| v.to_string())),
        ("--keep-minutely", c.keep_minutely.map(|v| v.to_string())),
        ("--keep-hourly", c.keep_hourly.map(|v| v.to_string())),
        ("--keep-daily", c.keep_daily.map(|v| v.to_string())),
        ("--keep-weekly", c.keep_weekly.map(|v| v.to_string())),
        ("--keep-monthly", c.keep_monthly.map(|v| v.to_string())),
        ("--keep-yearly", c.keep_yearly.map(|v| v.to_string())),
        ("--keep-13weekly", c.keep_13weekly.map(|v| v.to_string())),
        ("--keep-3monthly", c.keep_3monthly.map(|v| v.to_string())),
        ("--keep-last", None),
    ];
    let mut any_rule = false;
    for (flag, value) in rules {
        if let Some(v) = value {
            args.extend([flag.to_string(), v]);
            any_rule = true;
        }
    }
    if !any_rule {
        return Err(ActionError::new(
            "No retention policy is configured (keep_daily, keep_weekly, ...); refusing to prune",
        ));
    }
    match &c.prefix {
        Some(prefix) => args.extend(["--glob-archives".to_string(), format!("{prefix}*")]),
        None => args.extend(glob_flags(c)),
    }
    args.extend(borg.common_flags());
    args.extend(flag_if(a.stats && !cx.dry_run, "--stats"));
    args.extend(flag_if(a.list, "--list"));
    args.extend(flag_if(cx.dry_run, "--dry-run"));
    args.extend(borg.extra_options("prune"));
    args.push(cx.repository.path.clone());
    borg.run(args, false).map(drop)
}

fn compact(
    borg: &Borg<'_>,
    cx: &mut ActionContext<'_>,
    a: &CompactArgs,
) -> Result<(), ActionError> {
    if cx.dry_run {
        log::info("Skipping compact (dry run)");
        return Ok(());
    }
    log::info("Compacting segments");
    let mut args = vec!["compact".to_string()];
    args.extend(flag_if(a.progress, "--progress"));
    args.extend(flag_if(a.cleanup_commits, "--cleanup-commits"));
    let threshold = a.threshold.map(i64::from).or_else(|| {
        cx.config
            .other
            .get("compact_threshold")
            .and_then(|v| v.as_i64())
    });
    if let Some(t) = threshold {
        args.extend(["--threshold".to_string(), t.to_string()]);
    }
    args.extend(borg.common_flags());
    args.extend(borg.extra_options("compact"));
    args.push(cx.repository.path.clone());
    borg.run(args, false).map(drop)
}

fn check(borg: &Borg<'_>, cx: &mut ActionContext<'_>, a: &CheckArgs) -> Result<(), ActionError> {
    let c = cx.config;
    if !check_state::repository_enabled(c, cx.repository) {
        log::info("Skipping checks for this repository (not in check_repositories)");
        return Ok(());
    }
    log::info("Running consistency checks");
    let configured = check_state::configured_checks(c, &a.only);
    let repository_id = if a.repair {
        None
    } else {
        Some(repository_id(borg, cx)?)
    };
    // archive filters: --last from check_last, the configured glob, or --match-archives
    let mut filter = Vec::new();
    if configured.iter().any(|ch| ch == "archives" || ch == "data") {
        if let Some(n) = c.check_last {
            filter.extend(["--last".to_string(), n.to_string()]);
        }
        match (&a.match_archives, &c.prefix) {
            (Some(m), _) => filter.extend(["--glob-archives".to_string(), sh_glob(m)]),
            (None, Some(prefix)) => {
                filter.extend(["--glob-archives".to_string(), format!("{prefix}*")])
            }
            (None, None) => filter.extend(glob_flags(c)),
        }
    } else if c.check_last.is_some() {
        log::warning(
            "Ignoring check_last option, as \"archives\" or \"data\" are not in consistency checks",
        );
    }
    let archives_check_id = check_state::archives_check_id(&filter);
    let state = check_state::StateDir::for_config(c);
    let checks = check_state::filter_on_frequency(
        c,
        &state,
        repository_id.as_deref(),
        &configured,
        a.force || a.repair,
        archives_check_id.as_deref(),
        chrono::Local::now(),
    )?;
    let mut borg_checks: Vec<&str> = ["repository", "archives", "data"]
        .into_iter()
        .filter(|name| checks.iter().any(|c| c == name))
        .collect();
    if borg_checks.contains(&"data") && !borg_checks.contains(&"archives") {
        borg_checks.push("archives");
    }
    if !borg_checks.is_empty() {
        let mut args = vec!["check".to_string()];
        if a.repair {
            args.push("--repair".to_string());
            std::env::set_var("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES");
        }
        let max_duration = a.max_duration.or_else(|| {
            c.checks
                .iter()
                .find(|ch| ch.name == "repository")
                .and_then(|ch| ch.other.get("max_duration"))
                .and_then(|v| v.as_u64())
        });
        if let Some(d) = max_duration {
            args.extend(["--max-duration".to_string(), d.to_string()]);
        }
        let has = |n: &str| borg_checks.contains(&n);
        if !(has("repository") && has("archives")) {
            if has("repository") {
                args.push("--repository-only".to_string());
            }
            if has("archives") {
                args.push("--archives-only".to_string());
            }
        }
        if has("archives") {
            args.extend(filter.iter().cloned());
        }
        if has("data") {
            args.push("--verify-data".to_string());
        }
        args.extend(flag_if(a.progress, "--progress"));
        args.extend(borg.common_flags());
        args.extend(borg.extra_options("check"));
        args.push(cx.repository.path.clone());
        // borg check's exit code 1 means problems were found: an error here, as in borgmatic
        let result = borg.run(args, true);
        if a.repair {
            std::env::remove_var("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING");
        }
        result?;
        if let Some(id) = &repository_id {
            for name in &borg_checks {
                state.write_check_time(id, name, archives_check_id.as_deref())?;
            }
        }
    }
    if checks.iter().any(|c| c == "extract") {
        log::info("Running extract check");
        let latest = resolve_archive(borg, cx, "latest")?;
        let mut args = vec!["extract".to_string(), "--dry-run".to_string()];
        args.extend(borg.common_flags());
        args.push(format!("{}::{latest}", cx.repository.path));
        borg.run(args, true)?;
        if let Some(id) = &repository_id {
            state.write_check_time(id, "extract", None)?;
        }
    }
    if checks.iter().any(|c| c == "spot") {
        return Err(ActionError::new(
            "The spot check is not supported by rborg yet; use the archives or data checks",
        ));
    }
    Ok(())
}

/// The repository's id (hex), as `borg info --json` reports it.
fn repository_id(borg: &Borg<'_>, cx: &ActionContext<'_>) -> Result<String, ActionError> {
    let mut args = vec!["info".to_string(), "--json".to_string()];
    args.extend(
        borg.common_flags()
            .into_iter()
            .filter(|f| f != "--info" && f != "--debug" && f != "--show-rc"),
    );
    args.push(cx.repository.path.clone());
    let out = borg.run_captured(args)?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        ActionError::new(format!(
            "Cannot determine Borg repository ID for {}: {e}",
            cx.repository.path
        ))
    })?;
    json.pointer("/repository/id")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            ActionError::new(format!(
                "Cannot determine Borg repository ID for {}",
                cx.repository.path
            ))
        })
}

fn extract(
    borg: &Borg<'_>,
    cx: &mut ActionContext<'_>,
    a: &ExtractArgs,
) -> Result<(), ActionError> {
    let archive = resolve_archive(borg, cx, &a.archive)?;
    log::info(&format!(
        "Extracting archive {archive}{}",
        dry_label(cx.dry_run)
    ));
    let mut args = vec!["extract".to_string()];
    args.extend(flag_if(
        cx.config.numeric_ids == Some(true),
        "--numeric-ids",
    ));
    args.extend(borg.common_flags());
    args.extend(flag_if(cx.dry_run, "--dry-run"));
    if let Some(strip) = &a.strip_components {
        let n = if strip == "all" {
            if a.paths.is_empty() {
                return Err(ActionError::new(
                    "The --strip-components flag with \"all\" requires at least one --path",
                ));
            }
            a.paths
                .iter()
                .map(|p| {
                    p.split('/')
                        .filter(|s| !s.is_empty())
                        .count()
                        .saturating_sub(1)
                })
                .max()
                .unwrap_or(0)
        } else {
            strip.parse::<usize>().map_err(|_| {
                ActionError::new(format!(
                    "--strip-components: {strip:?} is not a number or \"all\""
                ))
            })?
        };
        args.extend(["--strip-components".to_string(), n.to_string()]);
    }
    args.extend(flag_if(a.progress, "--progress"));
    args.extend(borg.extra_options("extract"));
    args.push(format!("{}::{archive}", cx.repository.path));
    // borg takes archive paths without the leading slash
    args.extend(
        a.paths
            .iter()
            .map(|p| p.trim_start_matches('/').to_string()),
    );
    match &a.destination {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                ActionError::new(format!("{}: cannot create it: {e}", dir.display()))
            })?;
            borg.run_at(args, dir).map(drop)
        }
        None => borg.run(args, false).map(drop),
    }
}

fn mount(borg: &Borg<'_>, cx: &mut ActionContext<'_>, a: &MountArgs) -> Result<(), ActionError> {
    let archive = match &a.archive {
        Some(name) => Some(resolve_archive(borg, cx, name)?),
        None => None,
    };
    match &archive {
        Some(name) => log::info(&format!("Mounting archive {name}")),
        None => log::info("Mounting repository"),
    }
    let mut args = vec!["mount".to_string()];
    args.extend(borg.common_flags());
    args.extend(flag_if(a.foreground, "--foreground"));
    if let Some(o) = &a.options {
        args.extend(["-o".to_string(), o.clone()]);
    }
    if archive.is_none() {
        args.extend(filter_flags(&a.filter, Some(cx.config)));
    }
    args.extend(borg.extra_options("mount"));
    args.push(archive_location(&cx.repository.path, archive.as_deref()));
    args.push(a.mount_point.display().to_string());
    args.extend(
        a.paths
            .iter()
            .map(|p| p.trim_start_matches('/').to_string()),
    );
    borg.run(args, false).map(drop)
}

fn list(
    borg: &Borg<'_>,
    cx: &mut ActionContext<'_>,
    a: &ListArgs,
    archives: bool,
) -> Result<(), ActionError> {
    let archive = match &a.archive {
        Some(name) if !archives => Some(resolve_archive(borg, cx, name)?),
        _ => None,
    };
    if !a.json {
        match &archive {
            Some(name) => log::answer(&format!("Listing archive {name}")),
            None => log::answer("Listing repository"),
        }
    }
    let mut args = vec!["list".to_string()];
    args.extend(
        borg.common_flags()
            .into_iter()
            .filter(|f| !a.json || f != "--info"),
    );
    args.extend(flag_if(a.short, "--short"));
    if let Some(f) = &a.format {
        args.extend(["--format".to_string(), f.clone()]);
    }
    args.extend(flag_if(a.json && archive.is_none(), "--json"));
    args.extend(flag_if(a.json && archive.is_some(), "--json-lines"));
    if archive.is_none() {
        args.extend(filter_flags(&a.filter, Some(cx.config)));
    }
    args.extend(borg.extra_options("list"));
    args.push(archive_location(&cx.repository.path, archive.as_deref()));
    args.extend(a.paths.iter().cloned());
    if a.json {
        let out = borg.run_captured(args)?;
        if archive.is_some() {
            let files: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            cx.json.push(serde_json::json!({
                "repository": {"location": cx.repository.path},
                "files": files,
            }));
            Ok(())
        } else {
            collect_json(cx, &out.stdout)
        }
    } else {
        borg.run(args, false).map(drop)
    }
}

fn info(
    borg: &Borg<'_>,
    cx: &mut ActionContext<'_>,
    a: &InfoArgs,
    repository_only: bool,
) -> Result<(), ActionError> {
    if !a.json {
        log::answer("Displaying summary info");
    }
    let mut args = vec!["info".to_string()];
    args.extend(
        borg.common_flags()
            .into_iter()
            .filter(|f| !a.json || f != "--info"),
    );
    args.extend(flag_if(a.json, "--json"));
    let archive = if repository_only {
        None
    } else {
        match &a.archive {
            Some(name) => Some(resolve_archive(borg, cx, name)?),
            None => {
                args.extend(filter_flags(&a.filter, Some(cx.config)));
                None
            }
        }
    };
    args.extend(borg.extra_options("info"));
    args.push(archive_location(&cx.repository.path, archive.as_deref()));
    if a.json {
        let out = borg.run_captured(args)?;
        collect_json(cx, &out.stdout)
    } else {
        borg.run(args, false).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_glob_from_the_name_format() {
        let mut c = Config::default();
        assert_eq!(archive_glob(&c).as_deref(), Some("{hostname}-*"));
        c.archive_name_format = Some("{hostname}-{now:%Y-%m-%dT%H:%M:%S}".into());
        assert_eq!(archive_glob(&c).as_deref(), Some("{hostname}-*"));
        c.archive_name_format = Some("db-{utcnow}-{pid}".into());
        assert_eq!(archive_glob(&c).as_deref(), Some("db-*-*"));
        c.archive_name_format = Some("{now}".into());
        assert_eq!(archive_glob(&c), None);
        c.match_archives = Some("sh:web-*".into());
        assert_eq!(archive_glob(&c).as_deref(), Some("web-*"));
        c.match_archives = Some("*".into());
        assert_eq!(archive_glob(&c), None);
    }

    #[test]
    fn source_globs_expand_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b", "a", ".hidden", "c.txt"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let found = glob_paths(&dir.path().join("[a-b]"));
        assert_eq!(found, [dir.path().join("a"), dir.path().join("b")]);
        assert_eq!(glob_paths(&dir.path().join("*")).len(), 3);
    }
}
