//! The archive layer's extract, reference counting, delete and rename on repositories real
//! borg 1.2.4 wrote (modes none, repokey, keyfile-blake2):
//!
//! * [`RefCounts::build`] equals borg's own chunks cache after `borg create` (refcount, size
//!   and csize of every object);
//! * [`extract_archive`] reproduces the source files' content, modes, mtimes and symlinks, and
//!   patterns select what borg's would;
//! * [`delete_archive`] + manifest write + commit leaves a repository `borg check
//!   --verify-data` accepts, with only the remaining archive listed;
//! * [`rename_archive`] gives an archive borg lists under the new name.
//!
//! Needs `/usr/bin/borg` and `/usr/bin/python3`. Without them the tests print a notice and
//! pass, unless `RBORG_REQUIRE_BORG=1` (CI sets it), in which case they fail.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rborg_archive::archive::ArchiveMeta;
use rborg_archive::delete::{delete_archive, rename_archive};
use rborg_archive::extract::{extract_archive, ExtractEvent, ExtractOptions};
use rborg_archive::keys::{load_key, PassphraseProvider};
use rborg_archive::manifest::read_manifest_object;
use rborg_archive::patterns::{Pattern, PatternMatcher, PatternStyle};
use rborg_archive::refcount::RefCounts;
use rborg_archive::Manifest;
use rborg_crypto::Passphrase;
use rborg_repository::{LocalRepository, OpenOptions, Repository};
use rborg_testkit::{borg_available, borg_command, noise, ok, python, BORG};

const PASSPHRASE: &str = "refcount-test-pw";

struct Fixed;

impl PassphraseProvider for Fixed {
    fn environment_passphrase(&mut self) -> rborg_archive::Result<Option<Passphrase>> {
        Ok(Some(Passphrase::new(PASSPHRASE.to_string())))
    }
    fn ask(&mut self, _prompt: &str) -> rborg_archive::Result<Passphrase> {
        Ok(Passphrase::new(PASSPHRASE.to_string()))
    }
    fn new_passphrase(&mut self) -> rborg_archive::Result<Passphrase> {
        Ok(Passphrase::new(PASSPHRASE.to_string()))
    }
}

fn borg(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = borg_command(BORG, args, dir, &dir.join("home"), PASSPHRASE)
        .output()
        .unwrap();
    ok(&out, &format!("borg {args:?}"));
    out
}

/// borg's chunks cache: id hex -> (refcount, size, csize).
fn borg_chunks_cache(dir: &Path) -> BTreeMap<String, (u64, u64, u64)> {
    let script = "import glob, sys\nfrom borg.hashindex import ChunkIndex\np = glob.glob(sys.argv[1] + '/.cache/borg/*/chunks')[0]\nfor k, v in ChunkIndex.read(p).iteritems():\n    print(k.hex(), v.refcount, v.size, v.csize)\n";
    let out = python(script, [dir.join("home")]);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].to_string(),
                (
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                ),
            )
        })
        .collect()
}

fn open(dir: &Path) -> (LocalRepository, rborg_crypto::Key, Manifest) {
    let mut repo = LocalRepository::open(
        &dir.join("repo"),
        &OpenOptions {
            exclusive: Some(true),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let cdata = read_manifest_object(&mut repo).unwrap();
    // keyfile modes find their key under BORG_BASE_DIR
    let base = dir.join("home");
    let env = move |k: &str| match k {
        "BORG_BASE_DIR" => Some(base.display().to_string()),
        _ => None,
    };
    let key = load_key(&mut repo, &cdata, &mut Fixed, &env).unwrap().key;
    let manifest = Manifest::decode(&key, &cdata, "test").unwrap();
    (repo, key, manifest)
}

fn run(mode: &str, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("d/e")).unwrap();
    std::fs::write(src.join("shared.bin"), noise(seed, 2_500_000)).unwrap();
    std::fs::write(src.join("d/small"), b"small file\n").unwrap();
    std::fs::write(src.join("d/e/tmp.log"), b"log\n").unwrap();
    std::fs::write(src.join("d/dup1"), noise(seed + 1, 300_000)).unwrap();
    std::fs::write(src.join("d/dup2"), noise(seed + 1, 300_000)).unwrap();
    std::os::unix::fs::symlink("d/small", src.join("link")).unwrap();
    std::fs::set_permissions(
        src.join("d/small"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    let r = dir.join("repo");
    let r = r.to_str().unwrap();
    borg(dir, &["init", "-e", mode, r]);
    borg(dir, &["create", &format!("{r}::one"), "src"]);
    std::fs::write(src.join("only-two"), noise(seed + 2, 400_000)).unwrap();
    borg(dir, &["create", &format!("{r}::two"), "src"]);

    // reference counts equal borg's chunks cache
    let (mut repo, key, mut manifest) = open(dir);
    let refs = RefCounts::build(&mut repo, &key, &manifest).unwrap();
    let cache = borg_chunks_cache(dir);
    assert!(cache.len() > 5);
    assert_eq!(refs.len(), cache.len(), "{mode}: number of chunks");
    for (id, &(refcount, size, csize)) in &cache {
        let id_bytes: [u8; 32] = hex::decode(id).unwrap().try_into().unwrap();
        let e = refs
            .get(&id_bytes)
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(
            (e.refcount, e.size, e.csize),
            (refcount, size, csize),
            "{mode}: {id}"
        );
    }
    let dup = cache.values().filter(|v| v.0 >= 2).count();
    assert!(dup > 0, "no shared chunks to count");

    // extraction with patterns
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let meta = ArchiveMeta::load_by_name(&mut repo, &key, &manifest, "two", false).unwrap();
    let mut matcher = PatternMatcher::new();
    matcher.add_exclude(Pattern::parse("*.log", PatternStyle::Fnmatch).unwrap());
    matcher.add_include(Pattern::parse("src/d", PatternStyle::PathPrefix).unwrap());
    matcher.add_include(Pattern::parse("sh:src/*.bin", PatternStyle::PathPrefix).unwrap());
    let mut listed = Vec::new();
    let summary = extract_archive(
        &mut repo,
        &key,
        &meta,
        &mut matcher,
        &out,
        &ExtractOptions::default(),
        None,
        &mut |e| match e {
            ExtractEvent::Listed(p) => listed.push(p),
            ExtractEvent::Warning(w) => panic!("warning: {w}"),
            ExtractEvent::Total(_) | ExtractEvent::Data { .. } => panic!("progress not asked for"),
        },
    )
    .unwrap();
    assert_eq!(summary.warnings, 0);
    listed.sort();
    assert_eq!(
        listed,
        [
            "src/d",
            "src/d/dup1",
            "src/d/dup2",
            "src/d/e",
            "src/d/small",
            "src/shared.bin"
        ]
    );
    for f in ["shared.bin", "d/small", "d/dup1", "d/dup2"] {
        let (a, b) = (src.join(f), out.join("src").join(f));
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{f}"
        );
        let (ma, mb) = (
            std::fs::metadata(&a).unwrap(),
            std::fs::metadata(&b).unwrap(),
        );
        assert_eq!(ma.mode(), mb.mode(), "{f} mode");
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "{f} mtime"
        );
    }
    assert!(!out.join("src/d/e/tmp.log").exists());
    assert!(!out.join("src/link").exists());
    assert_eq!(summary.bytes, 2_500_000 + 11 + 600_000);

    // delete "one" through the library, then borg checks and lists
    let mut refs = refs;
    let nonce_file = dir.join("nonce");
    let stats = delete_archive(
        &mut repo,
        &key,
        &mut manifest,
        "one",
        &mut refs,
        false,
        false,
    )
    .unwrap();
    assert!(
        stats.deleted_objects >= 2,
        "metadata and item chunks of 'one' are unique"
    );
    assert!(stats.original_size > 3_000_000);
    rename_archive(
        &mut repo,
        &key,
        &mut manifest,
        "two",
        "zwei",
        nonce_file.clone(),
    )
    .unwrap();
    manifest.write(&mut repo, &key, nonce_file).unwrap();
    repo.commit(false, 0.1).unwrap();
    drop(repo);
    borg(dir, &["check", "--verify-data", r]);
    let list = borg(dir, &["list", "--short", r]);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "zwei\n");
    let (mut repo, key, manifest) = open(dir);
    let after = RefCounts::build(&mut repo, &key, &manifest).unwrap();
    assert_eq!(
        after.len(),
        refs.len(),
        "{mode}: refcounts after delete+rename"
    );
}

#[test]
fn refcounts_extract_delete_none() {
    if borg_available("refcount/extract test") {
        run("none", 11);
    }
}

#[test]
fn refcounts_extract_delete_repokey() {
    if borg_available("refcount/extract test") {
        run("repokey", 22);
    }
}

#[test]
fn refcounts_extract_delete_keyfile_blake2() {
    if borg_available("refcount/extract test") {
        run("keyfile-blake2", 33);
    }
}
