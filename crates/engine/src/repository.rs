//! The repository handle and its operations.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rborg_archive::check::{check_archives, Selection, Severity};
use rborg_archive::create::{create_archive, NoReport};
use rborg_archive::delete::delete_archive;
use rborg_archive::keys::load_key;
use rborg_archive::manifest::{read_manifest_object, Operation};
use rborg_archive::prune::{plan_now, select, Decision, PeriodRule, Policy};
use rborg_archive::refcount::RefCounts;
use rborg_archive::security::SecurityDir;
use rborg_archive::{ArchiveMeta, ChunkListEntry, ContentReader, ItemIter, Manifest};
use rborg_crypto::paths::std_env;
use rborg_crypto::Key;
use rborg_remote::{OpenArgs, RemoteRepository, SshCommand};
use rborg_repository::location::{Location, Protocol};
use rborg_repository::{LocalRepository, OpenOptions, Repository as Store};

use crate::{Entry, Error, PassphraseSource};

/// How long to wait for a lock held by someone else (borg's `--lock-wait` default).
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// The object store behind a [`Repository`]: a directory, or `borg serve` over ssh.
// one per open repository, so the size difference of the variants does not matter
#[allow(clippy::large_enum_variant)]
enum Backend {
    Local(LocalRepository),
    Remote(Box<RemoteRepository>),
}

impl Backend {
    fn store(&mut self) -> &mut (dyn Store + Send) {
        match self {
            Backend::Local(r) => r,
            Backend::Remote(r) => r.as_mut(),
        }
    }

    fn close(&mut self) -> Result<(), rborg_repository::Error> {
        match self {
            Backend::Local(r) => r.close(),
            Backend::Remote(r) => r.close(),
        }
    }
}

/// Answers the security database's questions (relocated or unknown unencrypted repository)
/// from borg's environment variables only (`BORG_RELOCATED_REPO_ACCESS_IS_OK`,
/// `BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK`), never from a terminal (borg's `yes()` with
/// no input available answers "no").
fn env_yes(_question: &str, env_var: &str) -> bool {
    std::env::var(env_var)
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "y" | "yes" | "1" | "true"))
}

/// An open borg 1.2 repository with its key and manifest.
pub struct Repository {
    backend: Backend,
    key: Key,
    manifest: Manifest,
    location: String,
    nonce_file: PathBuf,
}

/// An archive as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// Archive name.
    pub name: String,
    /// ID of its metadata object, hex (borg's archive fingerprint, `borg list --format {id}`).
    pub id: String,
    /// Start time as the manifest stores it (UTC, ISO 8601 with microseconds).
    pub time: String,
}

/// What to put into a new archive.
pub enum Source {
    /// A file or directory, archived recursively (like a `borg create` path argument).
    Path(PathBuf),
    /// A stream stored as one regular file named `name` (like `borg create --stdin-name`),
    /// owned by `root:root` with mode `0o660` (borg's `--stdin-*` defaults).
    Reader {
        /// Path of the item in the archive.
        name: String,
        /// The content.
        reader: Box<dyn Read + Send>,
    },
}

/// Options of [`Repository::create`] (a subset of `borg create`'s).
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Compression spec as `borg create -C` takes it (`lz4`, `zstd,3`, `auto,lzma`...).
    pub compression: String,
    /// Archive comment.
    pub comment: String,
    /// Store numeric owner IDs only (`--numeric-ids`).
    pub numeric_ids: bool,
    /// Do not cross file system boundaries (`-x`).
    pub one_file_system: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            compression: "lz4".into(),
            comment: String::new(),
            numeric_ids: false,
            one_file_system: false,
        }
    }
}

/// The statistics of a new archive (`borg create --stats`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateStats {
    /// Archive name.
    pub name: String,
    /// Archive ID, hex.
    pub id: String,
    /// Number of regular files.
    pub nfiles: u64,
    /// Plaintext size of everything the archive references.
    pub original_size: u64,
    /// Stored size of everything the archive references.
    pub compressed_size: u64,
    /// Stored size of the chunks this run added (what the backup cost).
    pub deduplicated_size: u64,
    /// Warnings (unreadable files that were skipped, as borg does).
    pub warnings: u64,
}

/// The keep rules of [`Repository::prune`] (`borg prune --keep-*`); 0 disables a rule, a
/// negative count keeps one archive of every period.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrunePolicy {
    /// `--keep-within`: an interval like `2d`, `1w`, `12H`, `3m`, `1y`.
    pub within: Option<String>,
    /// `--keep-last` / `--keep-secondly`.
    pub last: i64,
    /// `--keep-minutely`.
    pub minutely: i64,
    /// `--keep-hourly`.
    pub hourly: i64,
    /// `--keep-daily`.
    pub daily: i64,
    /// `--keep-weekly`.
    pub weekly: i64,
    /// `--keep-monthly`.
    pub monthly: i64,
    /// `--keep-yearly`.
    pub yearly: i64,
    /// `--glob-archives`: only archives whose name matches take part.
    pub glob: Option<String>,
}

/// What a prune kept and removed (or would remove, for a dry run), newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneResult {
    /// Kept archives with borg's reason (`daily #1`, `within #2`, `checkpoint`...).
    pub kept: Vec<(String, String)>,
    /// Pruned archive names.
    pub pruned: Vec<String>,
}

/// Which parts [`Repository::check`] checks (`borg check --repository-only/--archives-only/
/// --verify-data`). The check never repairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Check segments and index (local repositories; `borg serve` does it on its side).
    pub repository: bool,
    /// Check the archives' metadata and chunk references.
    pub archives: bool,
    /// Also decrypt and verify every object (`--verify-data`).
    pub verify_data: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            repository: true,
            archives: true,
            verify_data: false,
        }
    }
}

/// The outcome of [`Repository::check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Whether no problem was found.
    pub ok: bool,
    /// The problems and warnings the archive check logged (borg's ERROR/WARNING lines).
    pub messages: Vec<String>,
}

/// Sizes as `borg info` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DedupStats {
    /// Plaintext size of everything referenced.
    pub original_size: u64,
    /// Stored (compressed, encrypted) size of everything referenced.
    pub compressed_size: u64,
    /// Stored size of what is referenced only here.
    pub deduplicated_size: u64,
    /// Number of regular files (0 for repository totals).
    pub nfiles: u64,
}

/// An archive of an open repository; see [`Repository::archive`].
pub struct Archive<'r> {
    repo: &'r mut Repository,
    meta: ArchiveMeta,
}

/// The items of an archive in archive order; see [`Archive::items`].
pub struct Items<'a> {
    inner: ItemIter<'a>,
}

impl Iterator for Items<'_> {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner
            .next()
            .map(|r| r.map(|i| Entry::from_item(&i)).map_err(Error::from))
    }
}

impl Archive<'_> {
    /// Archive name.
    pub fn name(&self) -> String {
        self.meta.name_lossy()
    }

    /// Archive ID, hex.
    pub fn id(&self) -> String {
        hex_id(&self.meta.id)
    }

    /// The statistics stored in the archive (`size`, `csize`, `nfiles`, ...), by borg's names.
    pub fn stored_stats(&self) -> &[(String, u64)] {
        &self.meta.stats
    }

    /// The archive's items, in the order borg stored them (borg's `Archive.iter_items`).
    pub fn items(&mut self) -> Items<'_> {
        let Repository { backend, key, .. } = &mut *self.repo;
        Items {
            inner: ItemIter::new(backend.store(), key, self.meta.items.clone()),
        }
    }
}

fn hex_id(id: &[u8; 32]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The location's repository text without an archive (borg's `location.omit_archive()`).
fn repository_text(loc: &Location) -> &str {
    loc.processed.split("::").next().unwrap_or_default()
}

impl Repository {
    /// Opens the repository at `location` (a path, `file://`, `ssh://[user@]host[:port]/path`
    /// or `[user@]host:path`), unlocks its key with `passphrase`, loads and authenticates the
    /// manifest and runs borg's security checks (borg's `with_repository(manifest=True)`).
    ///
    /// Remote repositories are reached like borg does: `BORG_RSH` (default `ssh`) runs
    /// `BORG_REMOTE_PATH` (default `borg`) `serve` on the host (`remote.py`
    /// `RemoteRepository.ssh_cmd`). Keys, security and nonce files live under borg's
    /// directories (`BORG_BASE_DIR`, `BORG_KEYS_DIR`, `BORG_SECURITY_DIR`...), shared with
    /// borg. A relocated or unknown unencrypted repository is refused unless borg's
    /// `BORG_RELOCATED_REPO_ACCESS_IS_OK` / `BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK` say
    /// yes.
    pub fn open(location: &str, passphrase: PassphraseSource) -> Result<Repository, Error> {
        if location.is_empty() {
            return Err(Error::InvalidLocation("empty location".into()));
        }
        let loc = Location::parse(location).map_err(|e| Error::InvalidLocation(e.to_string()))?;
        let mut backend = if loc.proto == Protocol::Ssh {
            let cmd = SshCommand {
                rsh: std::env::var("BORG_RSH").ok(),
                remote_path: std::env::var("BORG_REMOTE_PATH").ok(),
                user: loc.user.clone(),
                host: loc.host.clone().unwrap_or_default(),
                port: loc.port,
                serve_args: Vec::new(),
            };
            let open = OpenArgs {
                lock_wait: Some(LOCK_WAIT.as_secs_f64()),
                exclusive: Some(true),
                ..OpenArgs::new(&loc.path)
            };
            // the server's log lines are not ours to print: a library stays quiet
            let sink = Arc::new(|_| {});
            Backend::Remote(Box::new(RemoteRepository::spawn(
                &cmd.argv(),
                repository_text(&loc),
                &open,
                sink,
            )?))
        } else {
            let opts = OpenOptions {
                exclusive: Some(true),
                lock_wait: Some(LOCK_WAIT),
                ..OpenOptions::default()
            };
            Backend::Local(LocalRepository::open(
                std::path::Path::new(&loc.path),
                &opts,
            )?)
        };
        let location = match &backend {
            Backend::Local(r) => r.path().display().to_string(),
            Backend::Remote(_) => loc.canonical_path(),
        };
        let store = backend.store();
        let cdata = read_manifest_object(store)?;
        let mut provider = passphrase;
        let key = load_key(store, &cdata, &mut provider, &std_env)?;
        let manifest = Manifest::decode(&key.key, &cdata, &location)?;
        manifest.check_repository_compatibility(&[Operation::Read, Operation::Write])?;
        let security = SecurityDir::open(&std_env, &store.id())?;
        security.assert_secure(
            &location,
            &manifest,
            &key.key,
            key.logically_encrypted(),
            false,
            &mut env_yes,
        )?;
        Ok(Repository {
            backend,
            key: key.key,
            manifest,
            location,
            nonce_file: security.nonce_file(),
        })
    }

    /// Where the repository is: its directory, or its canonical `ssh://` location.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The repository ID, hex (borg's `repository.id`).
    pub fn id(&mut self) -> String {
        hex_id(&self.backend.store().id())
    }

    /// The archives in the manifest, oldest first (borg's `borg list` order).
    pub fn list_archives(&self) -> Vec<ArchiveInfo> {
        let mut out: Vec<ArchiveInfo> = self
            .manifest
            .archives
            .iter()
            .map(|(name, e)| ArchiveInfo {
                name: name.clone(),
                id: hex_id(&e.id),
                time: e.time.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)));
        out
    }

    /// The archive `name`, with its metadata loaded and authenticated.
    pub fn archive(&mut self, name: &str) -> Result<Archive<'_>, Error> {
        if !self.manifest.archives.contains_key(name) {
            return Err(Error::ArchiveNotFound(name.to_string()));
        }
        let meta = ArchiveMeta::load_by_name(
            self.backend.store(),
            &self.key,
            &self.manifest,
            name,
            false,
        )?;
        Ok(Archive { repo: self, meta })
    }

    /// Streams the content of the regular file `path` of `archive` (a leading `/` is ignored,
    /// as borg stores relative paths). A hard link reads its target's chunks. Chunks are
    /// fetched, decrypted and checked against their IDs while reading.
    pub fn read_file(&mut self, archive: &str, path: &str) -> Result<impl Read + '_, Error> {
        let want = path.trim_start_matches('/').as_bytes().to_vec();
        let chunks = {
            let arch = self.archive(archive)?;
            let Repository { backend, key, .. } = &mut *arch.repo;
            let iter = ItemIter::new(backend.store(), key, arch.meta.items.clone());
            let mut masters: HashMap<Vec<u8>, Vec<ChunkListEntry>> = HashMap::new();
            let mut found = None;
            for item in iter {
                let item = item?;
                if item.path == want {
                    if !item.is_regular() {
                        return Err(Error::NotAFile(path.to_string()));
                    }
                    found = Some(match (&item.chunks, &item.source) {
                        (None, Some(src)) if item.is_hardlink_slave() => {
                            masters.remove(src).unwrap_or_default()
                        }
                        (chunks, _) => chunks.clone().unwrap_or_default(),
                    });
                    break;
                }
                if item.hardlink_master == Some(true) {
                    masters.insert(item.path.clone(), item.chunks.clone().unwrap_or_default());
                }
            }
            found.ok_or_else(|| Error::PathNotFound {
                archive: archive.to_string(),
                path: path.to_string(),
            })?
        };
        Ok(ContentReader::new(self.backend.store(), &self.key, &chunks))
    }

    /// Creates the archive `name` from `sources` and commits it (borg's `do_create`, without
    /// the client cache: every file is read, the repository's object list is the
    /// deduplication set). borg notices the new manifest and resynchronises its own cache.
    pub fn create(
        &mut self,
        name: &str,
        sources: Vec<Source>,
        options: &CreateOptions,
    ) -> Result<CreateStats, Error> {
        let compression = options
            .compression
            .parse()
            .map_err(|e| Error::InvalidOption(format!("compression: {e}")))?;
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let username = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default();
        let opts = rborg_archive::create::CreateOptions {
            compression,
            comment: options.comment.clone(),
            numeric_ids: options.numeric_ids,
            one_file_system: options.one_file_system,
            hostname: hostname.split('.').next().unwrap_or("").to_string(),
            username,
            cmdline: vec!["rborg-engine".into()],
            ..Default::default()
        };
        let sources = sources
            .into_iter()
            .map(|s| match s {
                Source::Path(p) => rborg_archive::create::Source::Path(p),
                Source::Reader { name, reader } => rborg_archive::create::Source::Stream {
                    reader,
                    name,
                    mode: 0o100660,
                    user: "root".into(),
                    group: "root".into(),
                },
            })
            .collect();
        let created = create_archive(
            self.backend.store(),
            &self.key,
            &mut self.manifest,
            self.nonce_file.clone(),
            name,
            sources,
            &opts,
            &mut NoReport,
        )?;
        Ok(CreateStats {
            name: created.name,
            id: hex_id(&created.id),
            nfiles: created.stats.nfiles,
            original_size: created.stats.osize,
            compressed_size: created.stats.csize,
            deduplicated_size: created.stats.usize,
            warnings: created.warnings,
        })
    }

    /// Decides with borg's rules which archives `policy` keeps (`borg prune`, `prune.py`) and,
    /// unless `dry_run`, deletes the others and commits.
    pub fn prune(&mut self, policy: &PrunePolicy, dry_run: bool) -> Result<PruneResult, Error> {
        let mut rules = Policy {
            within_hours: policy
                .within
                .as_deref()
                .map(rborg_archive::prune::parse_interval)
                .transpose()
                .map_err(Error::InvalidOption)?,
            ..Policy::default()
        };
        for (rule, n) in [
            (PeriodRule::Secondly, policy.last),
            (PeriodRule::Minutely, policy.minutely),
            (PeriodRule::Hourly, policy.hourly),
            (PeriodRule::Daily, policy.daily),
            (PeriodRule::Weekly, policy.weekly),
            (PeriodRule::Monthly, policy.monthly),
            (PeriodRule::Yearly, policy.yearly),
        ] {
            rules.set(rule, n);
        }
        if !rules.has_rule() {
            return Err(Error::InvalidOption(
                "at least one keep rule is required".into(),
            ));
        }
        let candidates = select(&self.manifest, policy.glob.as_deref())
            .map_err(|e| Error::InvalidOption(e.to_string()))?;
        let mut result = PruneResult::default();
        let mut to_delete = Vec::new();
        for (c, decision) in plan_now(&candidates, &rules) {
            match decision {
                Decision::Keep { rule, number } => {
                    result.kept.push((c.name, format!("{rule} #{number}")))
                }
                Decision::KeepCheckpoint => result.kept.push((c.name, "checkpoint".into())),
                Decision::Prune => {
                    to_delete.push(c.name.clone());
                    result.pruned.push(c.name);
                }
            }
        }
        if dry_run || to_delete.is_empty() {
            return Ok(result);
        }
        let store = self.backend.store();
        let mut refs = RefCounts::build(store, &self.key, &self.manifest)?;
        for name in &to_delete {
            delete_archive(
                store,
                &self.key,
                &mut self.manifest,
                name,
                &mut refs,
                false,
                false,
            )?;
        }
        self.manifest
            .write(store, &self.key, self.nonce_file.clone())?;
        store.commit(false, rborg_repository::DEFAULT_COMPACT_THRESHOLD)?;
        Ok(result)
    }

    /// Checks the repository and/or its archives without repairing (borg's `do_check`).
    pub fn check(&mut self, options: &CheckOptions) -> Result<CheckReport, Error> {
        let mut report = CheckReport {
            ok: true,
            messages: Vec::new(),
        };
        if options.repository {
            report.ok &= self.backend.store().check(false, false)?;
        }
        if options.archives || options.verify_data {
            let select_all = |m: &Manifest| m.archives.keys().cloned().collect::<Vec<_>>();
            let opts = rborg_archive::check::CheckOptions {
                repair: false,
                verify_data: options.verify_data,
                selection: Selection::Filter {
                    all: true,
                    select: &select_all,
                },
                nonce_file: self.nonce_file.clone(),
                location: self.location.clone(),
            };
            let messages = &mut report.messages;
            let mut log = |severity: Severity, line: &str| {
                if severity >= Severity::Warning {
                    messages.push(line.to_string());
                }
            };
            let ok = check_archives(self.backend.store(), &self.key, &opts, &mut log)?;
            report.ok &= ok;
        }
        Ok(report)
    }

    /// The deduplication statistics of archive `name` as `borg info REPO::NAME` shows them:
    /// `deduplicated_size` is the stored size of the chunks only this archive references.
    pub fn archive_stats(&mut self, name: &str) -> Result<DedupStats, Error> {
        if !self.manifest.archives.contains_key(name) {
            return Err(Error::ArchiveNotFound(name.to_string()));
        }
        let store = self.backend.store();
        let refs = RefCounts::build(store, &self.key, &self.manifest)?;
        let meta = ArchiveMeta::load_by_name(store, &self.key, &self.manifest, name, false)?;
        let s = rborg_archive::info::archive_stats(store, &self.key, &meta, &refs, false)?;
        Ok(DedupStats {
            original_size: s.original_size,
            compressed_size: s.compressed_size,
            deduplicated_size: s.deduplicated_size,
            nfiles: s.nfiles,
        })
    }

    /// The statistics of all archives together, as `borg info REPO` shows them ("All
    /// archives"): `deduplicated_size` is the stored size of all unique chunks.
    pub fn repository_stats(&mut self) -> Result<DedupStats, Error> {
        let store = self.backend.store();
        let refs = RefCounts::build(store, &self.key, &self.manifest)?;
        let s =
            rborg_archive::info::repository_stats(store, &self.key, &self.manifest, &refs, false)?;
        Ok(DedupStats {
            original_size: s.total_size,
            compressed_size: s.total_csize,
            deduplicated_size: s.unique_csize,
            nfiles: 0,
        })
    }

    /// Releases the lock (and ends a remote `borg serve`). Dropping the repository does the
    /// same, without reporting errors.
    pub fn close(mut self) -> Result<(), Error> {
        Ok(self.backend.close()?)
    }
}
