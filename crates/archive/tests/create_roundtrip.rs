//! `create_archive` read back through rborg's own reader (no borg needed): every item the walk
//! should produce is in the archive with the right metadata and content, hardlinks are stored
//! as one master plus slaves, excludes apply, the archive metadata carries borg's keys and a
//! valid TAM, and a second run of the same tree stores only metadata.

use rborg_testkit::noise;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rborg_archive::archive::{ArchiveMeta, ContentReader};
use rborg_archive::create::{create_archive, CreateError, CreateOptions, Reporter, Source};
use rborg_archive::init::init_repository;
use rborg_archive::item::Item;
use rborg_archive::keys::{load_key, PassphraseProvider};
use rborg_archive::manifest::{read_manifest_object, Operation};
use rborg_archive::patterns::{Pattern, PatternStyle};
use rborg_archive::Manifest;
use rborg_crypto::{KeyType, Passphrase};
use rborg_repository::{LocalRepository, OpenOptions, Repository};

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
struct Collect {
    statuses: Vec<(char, String)>,
    warnings: Vec<String>,
}

impl Reporter for Collect {
    fn status(&mut self, status: char, path: &[u8]) {
        self.statuses
            .push((status, String::from_utf8_lossy(path).into_owned()));
    }
    fn warning(&mut self, message: &str) {
        self.warnings.push(message.to_string());
    }
}

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("d/e")).unwrap();
    // larger than the 8 MiB maximum chunk, so it has at least two chunks whatever the key's seed
    std::fs::write(root.join("a.bin"), noise(1, 9_000_000)).unwrap();
    std::fs::write(root.join("d/b.txt"), b"bee").unwrap();
    std::fs::write(root.join("d/e/skip.o"), b"object").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("d/h1"), noise(2, 5000)).unwrap();
    std::fs::hard_link(root.join("d/h1"), root.join("h2")).unwrap();
    std::os::unix::fs::symlink("d/b.txt", root.join("ln")).unwrap();
}

struct Env {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
}

fn env_fn(dir: &Path) -> impl Fn(&str) -> Option<String> + '_ {
    move |k: &str| match k {
        "BORG_BASE_DIR" => Some(dir.join("home").display().to_string()),
        _ => None,
    }
}

fn setup(key_type: KeyType) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    make_tree(&dir.join("tree"));
    let mut repo = LocalRepository::create(&dir.join("repo"), &OpenOptions::exclusive()).unwrap();
    {
        let env = env_fn(&dir);
        init_repository(&mut repo, key_type, "repo", "repo", &mut Fixed, &env).unwrap();
    }
    drop(repo);
    Env { _tmp: tmp, dir }
}

fn run(
    env: &Env,
    name: &str,
    opts: &CreateOptions,
    report: &mut Collect,
) -> Result<rborg_archive::create::Created, CreateError> {
    let mut repo = LocalRepository::open(&env.dir.join("repo"), &OpenOptions::exclusive()).unwrap();
    let cdata = read_manifest_object(&mut repo).unwrap();
    let envf = env_fn(&env.dir);
    let key = load_key(&mut repo, &cdata, &mut Fixed, &envf).unwrap().key;
    let mut manifest = Manifest::load(&mut repo, &key, &[Operation::Write], "repo").unwrap();
    let nonce = env.dir.join("nonce");
    create_archive(
        &mut repo,
        &key,
        &mut manifest,
        nonce,
        name,
        vec![Source::Path(env.dir.join("tree"))],
        opts,
        report,
    )
}

fn read_back(env: &Env, name: &str) -> (ArchiveMeta, BTreeMap<String, (Item, Vec<u8>)>) {
    let mut repo = LocalRepository::open(&env.dir.join("repo"), &OpenOptions::default()).unwrap();
    let cdata = read_manifest_object(&mut repo).unwrap();
    let envf = env_fn(&env.dir);
    let key = load_key(&mut repo, &cdata, &mut Fixed, &envf).unwrap().key;
    let manifest = Manifest::load(&mut repo, &key, &[Operation::Read], "repo").unwrap();
    let meta = ArchiveMeta::load_by_name(&mut repo, &key, &manifest, name, true).unwrap();
    let items: Vec<Item> = meta
        .iter_items(&mut repo, &key)
        .collect::<Result<_, _>>()
        .unwrap();
    let prefix = env.dir.join("tree");
    let prefix = prefix.to_string_lossy();
    let prefix = prefix.trim_start_matches('/');
    let mut out = BTreeMap::new();
    for item in items {
        let mut content = Vec::new();
        ContentReader::for_item(&mut repo, &key, &item)
            .read_to_end(&mut content)
            .unwrap();
        let path = String::from_utf8(item.path.clone()).unwrap();
        let rel = path
            .strip_prefix(prefix)
            .unwrap_or(&path)
            .trim_start_matches('/')
            .to_string();
        out.insert(rel, (item, content));
    }
    (meta, out)
}

#[test]
fn archive_reads_back() {
    let env = setup(KeyType::Repokey);
    let mut opts = CreateOptions {
        threads: 3,
        ..CreateOptions::default()
    };
    opts.patterns
        .add_exclude(Pattern::parse("*.o", PatternStyle::Fnmatch).unwrap());
    opts.hostname = "host".into();
    opts.username = "user".into();
    let mut rep = Collect::default();
    let created = run(&env, "one", &opts, &mut rep).unwrap();
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    assert!(rep
        .statuses
        .iter()
        .any(|(s, p)| *s == 'x' && p.ends_with("skip.o")));
    assert_eq!(created.stats.nfiles, 4); // a.bin, d/b.txt, empty, one of h1/h2

    let (meta, items) = read_back(&env, "one");
    assert!(meta.tam_verified);
    assert_eq!(meta.name, b"one");
    assert_eq!(meta.hostname, b"host");
    let stat = |k: &str| meta.stats.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    assert_eq!(stat("nfiles"), Some(4));
    assert!(stat("size").unwrap() < created.stats.osize);
    assert!(stat("size").unwrap() > 3_005_000);
    assert_eq!(
        meta.chunker_params.as_ref().map(|v| v.to_string()),
        Some("[\"buzhash\", 19, 23, 21, 4095]".to_string())
    );
    let keys: Vec<&String> = items.keys().collect();
    assert_eq!(
        keys,
        ["", "a.bin", "d", "d/b.txt", "d/e", "d/h1", "empty", "h2", "ln"],
        "{keys:?}"
    );
    let tree = env.dir.join("tree");
    for (rel, (item, content)) in &items {
        let fs = tree.join(rel);
        let md = std::fs::symlink_metadata(&fs).unwrap();
        assert_eq!(item.mode, Some(md.mode()), "{rel}");
        assert_eq!(
            item.mtime,
            Some(md.mtime() * 1_000_000_000 + md.mtime_nsec()),
            "{rel}"
        );
        assert_eq!(item.uid, Some(u64::from(md.uid())));
        if md.is_file() && item.source.is_none() {
            assert_eq!(content, &std::fs::read(&fs).unwrap(), "{rel}");
            assert_eq!(item.size, Some(md.len()));
            assert_eq!(item.hardlink_master, Some(md.nlink() > 1));
        }
    }
    assert_eq!(items["ln"].0.source.as_deref(), Some(&b"d/b.txt"[..]));
    // the first of the two links (in inode order) carries the chunks, the other names it
    let (master, slave) = if items["d/h1"].0.source.is_some() {
        ("h2", "d/h1")
    } else {
        ("d/h1", "h2")
    };
    assert_eq!(items[master].0.hardlink_master, Some(true));
    let src = String::from_utf8(items[slave].0.source.clone().unwrap()).unwrap();
    assert!(src.ends_with(master), "{src}");
    assert!(items[slave].0.chunks.is_none());
    assert!(items["a.bin"].0.chunks.as_ref().unwrap().len() >= 2);

    // same tree again: only item metadata and the archive object are new
    let again = run(&env, "two", &opts, &mut Collect::default()).unwrap();
    assert_eq!(again.chunks_stored, 0);
    assert!(again.chunks_deduplicated >= 3);
    assert!(again.stats.usize < 10_000, "{:?}", again.stats);
    assert!(again.stats.osize.abs_diff(created.stats.osize) < 200);

    // an existing name is refused
    match run(&env, "one", &opts, &mut Collect::default()) {
        Err(CreateError::AlreadyExists(n)) => assert_eq!(n, "one"),
        other => panic!("{other:?}"),
    }
    let mut repo = LocalRepository::open(&env.dir.join("repo"), &OpenOptions::exclusive()).unwrap();
    assert!(repo.check(false, false).unwrap());
}

#[test]
fn dry_run_stores_nothing() {
    let env = setup(KeyType::Plaintext);
    let before = {
        let mut repo =
            LocalRepository::open(&env.dir.join("repo"), &OpenOptions::default()).unwrap();
        repo.len().unwrap()
    };
    let opts = CreateOptions {
        dry_run: true,
        ..CreateOptions::default()
    };
    let mut rep = Collect::default();
    run(&env, "dry", &opts, &mut rep).unwrap();
    assert!(rep.statuses.iter().all(|(s, _)| *s == '-'));
    assert_eq!(rep.statuses.len(), 10);
    let mut repo = LocalRepository::open(&env.dir.join("repo"), &OpenOptions::default()).unwrap();
    assert_eq!(repo.len().unwrap(), before);
}
