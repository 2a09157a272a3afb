//! Opening the repository a command names, with its key and manifest (borg's
//! `with_repository` decorator).

use rborg_archive::keys::{load_key, UnlockedKey};
use rborg_archive::manifest::{read_manifest_object, Operation};
use rborg_archive::security::SecurityDir;
use rborg_archive::Manifest;
use rborg_crypto::paths::std_env;
use rborg_remote::Level as RemoteLevel;
use rborg_remote::{ssh2_transport, LogSink, OpenArgs, RemoteLog, RemoteRepository, SshCommand};
use rborg_repository::location::{Location, Protocol};
use rborg_repository::{LocalRepository, ObjectId, OpenOptions, Repository, Result as RepoResult};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::common::{yes, CmdError, Context, InteractivePassphrase};

/// Parses a location argument (or `BORG_REPO` when absent) like borg's `location_validator`.
pub fn location(arg: Option<&str>) -> Result<Location, CmdError> {
    Ok(Location::parse(arg.unwrap_or(""))?)
}

/// How a command wants the repository locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// No lock at all (`lock=False` in borg, e.g. `break-lock`, `key import`).
    None,
    /// Shared lock, for reading.
    Shared,
    /// Exclusive lock, for writing.
    Exclusive,
}

/// Options for opening an existing repository.
pub fn open_options(ctx: &Context, lock: LockMode) -> OpenOptions {
    OpenOptions {
        exclusive: Some(lock == LockMode::Exclusive),
        lock_wait: Some(ctx.lock_wait()),
        lock: lock != LockMode::None && !ctx.common.bypass_lock,
        ..OpenOptions::default()
    }
}

/// A repository reached directly or through `borg serve` (borg's `Repository` vs.
/// `RemoteRepository`, chosen by the location's protocol). Commands use it through the
/// [`Repository`] trait; the few local-only operations (`config`, detailed check reports)
/// go through [`AnyRepository::as_local_mut`].
// one per command invocation, so the size difference of the variants does not matter
#[allow(clippy::large_enum_variant)]
pub enum AnyRepository {
    /// A repository directory on this machine.
    Local(LocalRepository),
    /// A repository behind `ssh host borg serve`, with its canonical location text.
    Remote(Box<RemoteRepository>, PathBuf),
}

impl AnyRepository {
    /// The local repository, if this is one.
    pub fn as_local_mut(&mut self) -> Option<&mut LocalRepository> {
        match self {
            AnyRepository::Local(r) => Some(r),
            AnyRepository::Remote(..) => None,
        }
    }

    /// The local repository, or borg's refusal for operations that only work on the
    /// repository's host (`what` names the operation).
    pub fn local_mut(&mut self, what: &str) -> Result<&mut LocalRepository, CmdError> {
        match self {
            AnyRepository::Local(r) => Ok(r),
            AnyRepository::Remote(_, p) => Err(CmdError::new(format!(
                "{what} is only supported for local repositories, run it on the host of {}",
                p.display()
            ))),
        }
    }

    /// What borg shows as the repository's location: the directory of a local repository,
    /// the canonical `ssh://` text of a remote one (borg's `location.canonical_path()`).
    pub fn path(&self) -> &Path {
        match self {
            AnyRepository::Local(r) => r.path(),
            AnyRepository::Remote(_, p) => p,
        }
    }

    /// Closes the repository (releases the lock; ends the remote `borg serve`).
    pub fn close(&mut self) -> Result<(), rborg_repository::Error> {
        match self {
            AnyRepository::Local(r) => r.close(),
            AnyRepository::Remote(r, _) => r.close(),
        }
    }

    /// `commit` with `cleanup_commits` (`borg compact --cleanup-commits`).
    pub fn commit_with_cleanup(
        &mut self,
        compact: bool,
        threshold: f64,
        cleanup_commits: bool,
    ) -> Result<(), rborg_repository::Error> {
        match self {
            AnyRepository::Local(r) => r.commit_with_cleanup(compact, threshold, cleanup_commits),
            AnyRepository::Remote(r, _) => {
                r.commit_with_cleanup(compact, threshold, cleanup_commits)
            }
        }
    }

    fn inner(&mut self) -> &mut dyn Repository {
        match self {
            AnyRepository::Local(r) => r,
            AnyRepository::Remote(r, _) => r.as_mut(),
        }
    }
}

impl Repository for AnyRepository {
    fn id(&self) -> ObjectId {
        match self {
            AnyRepository::Local(r) => r.id(),
            AnyRepository::Remote(r, _) => r.id(),
        }
    }
    fn len(&mut self) -> RepoResult<usize> {
        self.inner().len()
    }
    fn contains(&mut self, id: &ObjectId) -> RepoResult<bool> {
        self.inner().contains(id)
    }
    fn get(&mut self, id: &ObjectId) -> RepoResult<Vec<u8>> {
        self.inner().get(id)
    }
    fn get_many(&mut self, ids: &[ObjectId]) -> RepoResult<Vec<Vec<u8>>> {
        self.inner().get_many(ids)
    }
    fn preload(&mut self, ids: &[ObjectId]) -> RepoResult<()> {
        self.inner().preload(ids)
    }
    fn put(&mut self, id: &ObjectId, data: &[u8]) -> RepoResult<()> {
        self.inner().put(id, data)
    }
    fn delete(&mut self, id: &ObjectId) -> RepoResult<()> {
        self.inner().delete(id)
    }
    fn commit(&mut self, compact: bool, threshold: f64) -> RepoResult<()> {
        self.inner().commit(compact, threshold)
    }
    fn rollback(&mut self) -> RepoResult<()> {
        self.inner().rollback()
    }
    fn list(
        &mut self,
        limit: Option<usize>,
        marker: Option<&ObjectId>,
    ) -> RepoResult<Vec<ObjectId>> {
        self.inner().list(limit, marker)
    }
    fn scan(
        &mut self,
        limit: Option<usize>,
        marker: Option<&ObjectId>,
    ) -> RepoResult<Vec<ObjectId>> {
        self.inner().scan(limit, marker)
    }
    fn check(&mut self, repair: bool, save_space: bool) -> RepoResult<bool> {
        self.inner().check(repair, save_space)
    }
    fn destroy(&mut self) -> RepoResult<()> {
        self.inner().destroy()
    }
    fn save_key(&mut self, keydata: &[u8]) -> RepoResult<()> {
        self.inner().save_key(keydata)
    }
    fn load_key(&mut self) -> RepoResult<Vec<u8>> {
        self.inner().load_key()
    }
    fn break_lock(&mut self) -> RepoResult<()> {
        self.inner().break_lock()
    }
    fn get_free_nonce(&mut self) -> RepoResult<Option<u64>> {
        self.inner().get_free_nonce()
    }
    fn commit_nonce_reservation(
        &mut self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> RepoResult<()> {
        self.inner()
            .commit_nonce_reservation(next_unreserved, start_nonce)
    }
}

/// Relays the server's log lines to our log (borg's `handle_remote_line`).
fn log_sink(ctx: &Context) -> LogSink {
    let log = ctx.log.clone();
    let progress = ctx.common.progress;
    Arc::new(move |line| match line {
        RemoteLog::Message { level, message, .. } => match level {
            RemoteLevel::Debug => log.debug(&message),
            RemoteLevel::Info => log.info(&message),
            RemoteLevel::Warning => log.warning(&message),
            RemoteLevel::Error | RemoteLevel::Critical => log.error(&message),
        },
        RemoteLog::Progress(text) => {
            if progress {
                eprint!("{text}\r");
            }
        }
        RemoteLog::Plain(text) => eprintln!("{text}"),
    })
}

/// The `ssh ... borg serve ...` command for a remote location (borg's `ssh_cmd` + `borg_cmd`):
/// `--rsh`/`BORG_RSH`, `--remote-path`/`BORG_REMOTE_PATH`, and our log level, repository
/// debug topics and `storage_quota` (init) passed on to the server. `.argv()` is what the
/// spawned transport runs; the ssh2 transport uses its parts.
pub fn serve_command(ctx: &Context, loc: &Location, storage_quota: Option<u64>) -> SshCommand {
    let c = &ctx.common;
    let mut serve_args = Vec::new();
    if c.debug {
        serve_args.push("--debug".to_string());
    } else if c.info {
        serve_args.push("--info".into());
    } else if c.critical {
        serve_args.push("--critical".into());
    } else if c.error {
        serve_args.push("--error".into());
    }
    for topic in &c.debug_topic {
        let topic = if topic.contains('.') {
            topic.clone()
        } else {
            format!("borg.debug.{topic}")
        };
        if topic.contains("repository") {
            serve_args.push(format!("--debug-topic={topic}"));
        }
    }
    if let Some(q) = storage_quota.filter(|q| *q > 0) {
        serve_args.push(format!("--storage-quota={q}"));
    }
    SshCommand {
        rsh: c.rsh.clone().or_else(|| std::env::var("BORG_RSH").ok()),
        remote_path: c
            .remote_path
            .clone()
            .or_else(|| std::env::var("BORG_REMOTE_PATH").ok()),
        user: loc.user.clone(),
        host: loc.host.clone().unwrap_or_default(),
        port: loc.port,
        serve_args,
    }
}

/// Opens (or, with `open.create`, creates) the remote repository `loc` names.
pub fn open_remote(
    ctx: &Context,
    loc: &Location,
    open: &OpenArgs,
    storage_quota: Option<u64>,
) -> Result<AnyRepository, CmdError> {
    let cmd = serve_command(ctx, loc, storage_quota);
    // errors name the repository without the archive (borg's `location.omit_archive()`)
    let repo_text = loc.processed.split("::").next().unwrap_or_default();
    // RBORG_SSH_TRANSPORT=ssh2: in-process SSH instead of spawning BORG_RSH (docs/remote.md)
    let mut repo = if ssh2_transport::selected() {
        let command = ssh2_transport::remote_command(&cmd);
        ctx.log
            .debug(&format!("SSH (ssh2) remote command: {command:?}"));
        let config = ssh2_transport::Ssh2Config::from_env();
        ssh2_transport::connect_repository(&cmd, &config, repo_text, open, log_sink(ctx))?
    } else {
        let argv = cmd.argv();
        ctx.log.debug(&format!("SSH command line: {argv:?}"));
        RemoteRepository::spawn(&argv, repo_text, open, log_sink(ctx))?
    };
    // --upload-ratelimit (or the deprecated --remote-ratelimit), in KiB/s
    let rate = ctx.common.upload_ratelimit.or(ctx.common.remote_ratelimit);
    if let Some(kib) = rate.filter(|r| *r > 0) {
        repo.set_upload_ratelimit(kib.saturating_mul(1024));
    }
    Ok(AnyRepository::Remote(
        Box::new(repo),
        PathBuf::from(loc.canonical_path()),
    ))
}

/// Opens the repository at `loc`, locally or through `borg serve`.
pub fn open_repository(
    ctx: &Context,
    loc: &Location,
    lock: LockMode,
) -> Result<AnyRepository, CmdError> {
    let opts = open_options(ctx, lock);
    if loc.proto == Protocol::Ssh {
        let open = OpenArgs {
            lock_wait: opts.lock_wait.map(|d| d.as_secs_f64()),
            lock: opts.lock,
            exclusive: opts.exclusive,
            ..OpenArgs::new(&loc.path)
        };
        return open_remote(ctx, loc, &open, None);
    }
    Ok(AnyRepository::Local(LocalRepository::open(
        std::path::Path::new(&loc.path),
        &opts,
    )?))
}

/// A repository opened with its key and manifest.
pub struct Opened {
    pub repository: AnyRepository,
    pub key: UnlockedKey,
    pub manifest: Manifest,
}

/// Opens the repository, unlocks its key, loads and verifies the manifest for `operations`,
/// and runs the security database checks (borg's `with_repository(manifest=True)`).
pub fn open_with_manifest(
    ctx: &Context,
    loc: &Location,
    lock: LockMode,
    operations: &[Operation],
) -> Result<Opened, CmdError> {
    let mut repository = open_repository(ctx, loc, lock)?;
    let location = repository.path().display().to_string();
    let cdata = read_manifest_object(&mut repository)?;
    let key = load_key(
        &mut repository,
        &cdata,
        &mut InteractivePassphrase,
        &std_env,
    )?;
    let manifest = Manifest::decode(&key.key, &cdata, &location)?;
    manifest.check_repository_compatibility(operations)?;
    let security = SecurityDir::open(&std_env, &rborg_repository::Repository::id(&repository))?;
    match security.previous_location() {
        // Python's %r of a str
        Some(p) => ctx.log.debug(&format!(
            "security: read previous location '{}'",
            p.replace('\\', "\\\\").replace('\'', "\\'")
        )),
        None => ctx.log.debug(&format!(
            "security: previous location file {} not found",
            security.location_file().display()
        )),
    }
    security.assert_secure(
        &location,
        &manifest,
        &key.key,
        key.logically_encrypted(),
        true,
        &mut |q, env| yes(q, env),
    )?;
    ctx.log
        .debug("security: repository checks ok, allowing access");
    Ok(Opened {
        repository,
        key,
        manifest,
    })
}
