//! The client cache through the library: transactions roll back like borg's, the chunks
//! cache kept by `create_archive_cached` equals one rebuilt from the archives by `sync`, the
//! files cache makes unchanged files `U`, and `BORG_FILES_CACHE_SUFFIX` names the file.
//! (Interoperation with real borg is tested in `crates/rborg/tests/cache_interop.rs`.)

use std::path::{Path, PathBuf};

use rborg_archive::cache::{CacheOptions, LocalCache};
use rborg_archive::create::{create_archive_cached, CreateOptions, Reporter, Source};
use rborg_archive::init::init_repository;
use rborg_archive::keys::{load_key, PassphraseProvider};
use rborg_archive::manifest::{read_manifest_object, Operation};
use rborg_archive::Manifest;
use rborg_crypto::{Key, KeyType, Passphrase};
use rborg_repository::{LocalRepository, OpenOptions};
use rborg_testkit::noise;

struct Fixed;

impl PassphraseProvider for Fixed {
    fn environment_passphrase(&mut self) -> rborg_archive::Result<Option<Passphrase>> {
        Ok(Some(Passphrase::new("pw".to_string())))
    }
    fn ask(&mut self, _prompt: &str) -> rborg_archive::Result<Passphrase> {
        Ok(Passphrase::new("pw".to_string()))
    }
    fn new_passphrase(&mut self) -> rborg_archive::Result<Passphrase> {
        Ok(Passphrase::new("pw".to_string()))
    }
}

#[derive(Default)]
struct Statuses(Vec<(char, String)>);

impl Reporter for Statuses {
    fn status(&mut self, status: char, path: &[u8]) {
        self.0
            .push((status, String::from_utf8_lossy(path).into_owned()));
    }
    fn warning(&mut self, _: &str) {}
}

fn env_fn(dir: &Path, suffix: bool) -> impl Fn(&str) -> Option<String> + '_ {
    move |k: &str| match k {
        "BORG_BASE_DIR" => Some(dir.join("home").display().to_string()),
        "BORG_FILES_CACHE_SUFFIX" if suffix => Some("x".to_string()),
        _ => None,
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

fn setup() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a"), noise(1, 3_000_000)).unwrap();
    std::fs::write(tree.join("b"), noise(2, 20_000)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(tree.join("z-newest"), b"n").unwrap();
    let mut repo = LocalRepository::create(&dir.join("repo"), &OpenOptions::exclusive()).unwrap();
    {
        let env = env_fn(&dir, false);
        init_repository(
            &mut repo,
            KeyType::Repokey,
            "repo",
            "repo",
            &mut Fixed,
            &env,
        )
        .unwrap();
    }
    Fixture { _tmp: tmp, dir }
}

fn open(dir: &Path) -> (LocalRepository, Key, Manifest) {
    let mut repo = LocalRepository::open(&dir.join("repo"), &OpenOptions::exclusive()).unwrap();
    let cdata = read_manifest_object(&mut repo).unwrap();
    let key = load_key(&mut repo, &cdata, &mut Fixed, &env_fn(dir, false))
        .unwrap()
        .key;
    let manifest = Manifest::load(&mut repo, &key, &[Operation::Write], "repo").unwrap();
    (repo, key, manifest)
}

fn cache_opts<'a>(env: &'a dyn Fn(&str) -> Option<String>) -> CacheOptions<'a> {
    CacheOptions {
        env,
        files_cache_mode: "cis".into(),
        location: "repo".into(),
        lock_wait: Some(std::time::Duration::from_secs(1)),
        sync: true,
    }
}

fn create(dir: &Path, name: &str, suffix: bool) -> Vec<(char, String)> {
    let (mut repo, key, mut manifest) = open(dir);
    let env = env_fn(dir, suffix);
    let mut cache = LocalCache::open(&mut repo, &key, &manifest, &cache_opts(&env)).unwrap();
    let mut statuses = Statuses::default();
    create_archive_cached(
        &mut repo,
        &key,
        &mut manifest,
        dir.join("nonce"),
        name,
        vec![Source::Path(dir.join("tree"))],
        &CreateOptions::default(),
        &mut statuses,
        Some(&mut cache),
    )
    .unwrap();
    statuses.0
}

fn status(list: &[(char, String)], file: &str) -> Option<char> {
    list.iter()
        .find(|(_, p)| p.ends_with(&format!("/tree/{file}")))
        .map(|(s, _)| *s)
}

#[test]
fn kept_chunks_cache_equals_a_fresh_sync_and_files_are_unchanged() {
    let fx = setup();
    let first = create(&fx.dir, "one", false);
    assert_eq!(status(&first, "a"), Some('A'));
    let second = create(&fx.dir, "two", false);
    assert_eq!(status(&second, "a"), Some('U'));
    assert_eq!(status(&second, "b"), Some('U'));
    // the newest file is never memorized (cmtime granularity rule)
    assert_eq!(status(&second, "z-newest"), Some('A'));

    let (mut repo, key, manifest) = open(&fx.dir);
    let env = env_fn(&fx.dir, false);
    let kept: Vec<_> = {
        let cache = LocalCache::open(&mut repo, &key, &manifest, &cache_opts(&env)).unwrap();
        assert_eq!(cache.manifest_id(), Some(manifest.id), "no sync needed");
        let mut v: Vec<_> = cache.chunks.iter().collect();
        v.sort_by_key(|(id, _)| *id);
        v
    };
    let cache_path = rborg_archive::cache::repository_cache_dir(&env, &repo_id(&fx.dir));
    std::fs::remove_dir_all(&cache_path).unwrap();
    let fresh = LocalCache::open(&mut repo, &key, &manifest, &cache_opts(&env)).unwrap();
    let mut rebuilt: Vec<_> = fresh.chunks.iter().collect();
    rebuilt.sort_by_key(|(id, _)| *id);
    assert_eq!(kept, rebuilt);
    // the sync left one compact index (+ integrity) per archive
    let n = std::fs::read_dir(cache_path.join("chunks.archive.d"))
        .unwrap()
        .count();
    assert_eq!(n, 4);
}

fn repo_id(dir: &Path) -> [u8; 32] {
    use rborg_repository::Repository;
    LocalRepository::open(&dir.join("repo"), &OpenOptions::default())
        .unwrap()
        .id()
}

#[test]
fn uncommitted_transaction_is_rolled_back() {
    let fx = setup();
    let (mut repo, key, manifest) = open(&fx.dir);
    let env = env_fn(&fx.dir, false);
    let path;
    {
        let mut cache = LocalCache::open(&mut repo, &key, &manifest, &cache_opts(&env)).unwrap();
        path = cache.path().to_path_buf();
        cache.add_refs(&[7; 32], 1, 10, 20).unwrap();
        assert!(path.join("txn.active").is_dir());
        // "crash": the modified chunks cache hits the disk, the transaction stays open
        std::fs::write(path.join("chunks"), cache.chunks.to_bytes()).unwrap();
    }
    let cache = LocalCache::open(&mut repo, &key, &manifest, &cache_opts(&env)).unwrap();
    assert!(!cache.seen_chunk(&[7; 32]));
    assert!(!path.join("txn.active").exists());
    assert!(!path.join("txn.tmp").exists());
}

#[test]
fn files_cache_suffix() {
    let fx = setup();
    create(&fx.dir, "one", true);
    let cache_path =
        rborg_archive::cache::repository_cache_dir(&env_fn(&fx.dir, false), &repo_id(&fx.dir));
    assert!(cache_path.join("files.x").metadata().unwrap().len() > 0);
    let config = std::fs::read_to_string(cache_path.join("config")).unwrap();
    assert!(
        config.contains("files.x = {\"algorithm\": \"XXH64\""),
        "{config}"
    );
    // the suffixed files cache is used by the next run with the same suffix
    let second = create(&fx.dir, "two", true);
    assert_eq!(status(&second, "a"), Some('U'));
}
