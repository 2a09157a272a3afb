//! `rborg borg check [--repair]` against borg 1.2.4 on a repository borg made and then damaged
//! (the kinds of damage of borg's `ArchiverCheckTestCase`, all at once):
//!
//! * a file chunk shared by three archives deleted (zero replacement, `chunks_healthy`);
//! * a file chunk corrupted in place (found by `--verify-data`, deleted, zero-replaced);
//! * the only item-stream chunk of one archive deleted (its items are lost);
//! * the metadata object of one archive deleted (the archive is dropped);
//! * the manifest deleted (rebuilt from the archive metadata objects).
//!
//! The damaged repository is copied; rborg repairs one copy, `borg check --repair` the twin.
//! Then: both checkers flag the damage (exit 1) before, `borg check --verify-data` and `rborg
//! borg check` are clean after, the same archives survive with the same items and the same
//! files marked broken, every healthy file extracts byte-identical (broken ones with zeros
//! exactly where the lost chunk was), and both copies hold the same content objects (zero
//! replacements included). Finally a new backup brings the lost chunks back and `rborg borg
//! check --repair` heals the files.
//!
//! Also: a manifest rebuild with two archives named alike (`.1` suffix, as borg), an empty
//! repository, and `rborg borg upgrade --disable-tam / --tam / --archives-tam` checked with borg.
//!
//! These tests need `/usr/bin/borg`. Without it they print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1` (CI sets it), in which case they fail.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rborg_archive::archive::{fetch_object, ArchiveMeta};
use rborg_archive::check::all_object_ids;
use rborg_archive::keys::{load_key, PassphraseProvider};
use rborg_archive::manifest::{put_metadata_object, read_manifest_object};
use rborg_archive::{Manifest, MANIFEST_ID};
use rborg_crypto::paths::std_env;
use rborg_crypto::Passphrase;
use rborg_repository::{LocalRepository, ObjectId, OpenOptions, Repository};
use rborg_testkit::{borg_available, borg_command, noise, ok, BORG};

const PASSPHRASE: &str = "check-test-pw";
const BLOCK: usize = 4096;

struct FixedPassphrase;

impl PassphraseProvider for FixedPassphrase {
    fn environment_passphrase(&mut self) -> rborg_archive::Result<Option<Passphrase>> {
        Ok(Some(Passphrase::new(PASSPHRASE)))
    }
    fn ask(&mut self, _prompt: &str) -> rborg_archive::Result<Passphrase> {
        Ok(Passphrase::new(PASSPHRASE))
    }
    fn new_passphrase(&mut self) -> rborg_archive::Result<Passphrase> {
        Ok(Passphrase::new(PASSPHRASE))
    }
}

fn command(cwd: &Path, home: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = borg_command(program, args, cwd, home, PASSPHRASE);
    cmd.env("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES")
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null());
    cmd
}

fn borg(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    command(cwd, home, BORG, args).output().unwrap()
}

fn rborg(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    let mut full = vec!["borg"];
    full.extend_from_slice(args);
    command(cwd, home, env!("CARGO_BIN_EXE_rborg"), &full)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn expect_code(out: &Output, code: i32, what: &str) -> String {
    assert_eq!(out.status.code(), Some(code), "{what}:\n{}", text(out));
    text(out)
}

fn open(repo: &Path) -> LocalRepository {
    let opts = OpenOptions {
        exclusive: Some(true),
        ..OpenOptions::default()
    };
    LocalRepository::open(repo, &opts).unwrap()
}

/// What the test damages, found through the library (borg's tests use borg's own classes).
struct Targets {
    /// Last chunk of `big.bin` (shared by a1, a2, a3).
    big_last: ObjectId,
    /// First chunk of `other.bin`.
    other_first: ObjectId,
    /// a2's metadata object.
    a2_meta: ObjectId,
    /// a4's only item-stream chunk.
    a4_items: ObjectId,
}

fn find_targets(repo: &Path) -> Targets {
    let mut repository = open(repo);
    let cdata = read_manifest_object(&mut repository).unwrap();
    let key = load_key(&mut repository, &cdata, &mut FixedPassphrase, &std_env)
        .unwrap()
        .key;
    let manifest = Manifest::decode(&key, &cdata, "test").unwrap();
    let meta = |repository: &mut LocalRepository, name: &str| {
        ArchiveMeta::load_by_name(repository, &key, &manifest, name, false).unwrap()
    };
    let a1 = meta(&mut repository, "a1");
    let chunks_of = |repository: &mut LocalRepository, path: &str| {
        a1.iter_items(repository, &key)
            .map(Result::unwrap)
            .find(|i| i.path.ends_with(path.as_bytes()))
            .and_then(|i| i.chunks)
            .unwrap()
    };
    let big = chunks_of(&mut repository, "big.bin");
    let other = chunks_of(&mut repository, "other.bin");
    assert_eq!(big.len(), 5, "big.bin should have 5 fixed-size chunks");
    let a2 = meta(&mut repository, "a2");
    let a4 = meta(&mut repository, "a4");
    assert_eq!(a4.items.len(), 1);
    Targets {
        big_last: big[4].id,
        other_first: other[0].id,
        a2_meta: a2.id,
        a4_items: a4.items[0],
    }
}

fn damage(repo: &Path, t: &Targets) {
    let mut repository = open(repo);
    for id in [t.big_last, t.a2_meta, t.a4_items, MANIFEST_ID] {
        repository.delete(&id).unwrap();
    }
    let mut bad = repository.get(&t.other_first).unwrap();
    bad.extend_from_slice(b"1234");
    repository.put(&t.other_first, &bad).unwrap();
    repository.commit(false, 0.1).unwrap();
    repository.close().unwrap();
}

/// Every object but the manifest, the archives' metadata objects and their item streams.
fn content_ids(repo: &Path) -> BTreeSet<ObjectId> {
    let mut repository = open(repo);
    let cdata = read_manifest_object(&mut repository).unwrap();
    let key = load_key(&mut repository, &cdata, &mut FixedPassphrase, &std_env)
        .unwrap()
        .key;
    let manifest = Manifest::decode(&key, &cdata, "test").unwrap();
    let mut ids: BTreeSet<ObjectId> = all_object_ids(&mut repository)
        .unwrap()
        .into_iter()
        .collect();
    ids.remove(&MANIFEST_ID);
    for entry in manifest.archives.values() {
        ids.remove(&entry.id);
        // read leniently: borg 1.2.4's repair keeps a stale archive TAM
        let data = fetch_object(&mut repository, &key, &entry.id).unwrap();
        let meta = rborg_crypto::msgpack::unpack(&data).unwrap();
        let items = rborg_crypto::msgpack::map_get(&meta, "items")
            .and_then(rmpv::Value::as_array)
            .unwrap();
        for id in items {
            let id: ObjectId = rborg_crypto::msgpack::as_raw(id)
                .unwrap()
                .try_into()
                .unwrap();
            ids.remove(&id);
        }
    }
    repository.close().unwrap();
    ids
}

fn archive_names(dir: &Path, home: &Path, repo: &str) -> Vec<String> {
    let out = ok(&borg(dir, home, &["list", "--short", repo]), "borg list");
    let mut names: Vec<String> = out.lines().map(str::to_string).collect();
    names.sort();
    names
}

fn health_listing(dir: &Path, home: &Path, archive: &str) -> String {
    ok(
        &borg(
            dir,
            home,
            &[
                "list",
                "--format",
                "{health} {type} {path} {size}{NL}",
                archive,
            ],
        ),
        "borg list health",
    )
}

/// `borg extract` into `target`; borg warns (exit 1) about files with all-zero replacement
/// chunks.
fn extract(home: &Path, archive: &str, target: &Path, code: i32) -> String {
    std::fs::create_dir_all(target).unwrap();
    let out = command(target, home, BORG, &["extract", archive])
        .output()
        .unwrap();
    expect_code(&out, code, "borg extract")
}

#[test]
fn repair_agrees_with_borg_and_heals() {
    if !borg_available("check --repair interop test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let src = dir.join("src");
    let src2 = dir.join("src2");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&src2).unwrap();
    let big = noise(11, 5 * BLOCK - 500);
    let other = noise(12, 2 * BLOCK);
    std::fs::write(src.join("small.txt"), b"small file\n").unwrap();
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("other.bin"), &other).unwrap();
    std::fs::write(src2.join("lonely.txt"), b"only in a4\n").unwrap();

    let repo_a = dir.join("repo-a");
    let repo_b = dir.join("repo-b");
    let a = repo_a.to_str().unwrap().to_string();
    let b = repo_b.to_str().unwrap().to_string();
    ok(
        &borg(dir, &home, &["init", "-e", "repokey", &a]),
        "borg init",
    );
    let create = |name: &str, what: &str| {
        let archive = format!("{a}::{name}");
        ok(
            &borg(
                dir,
                &home,
                &["create", "--chunker-params", "fixed,4096", &archive, what],
            ),
            "borg create",
        );
    };
    create("a1", "src");
    std::fs::write(src.join("extra.txt"), b"added later\n").unwrap();
    create("a2", "src");
    create("a3", "src");
    create("a4", "src2");

    let targets = find_targets(&repo_a);
    damage(&repo_a, &targets);
    let copy = Command::new("cp").args(["-a", &a, &b]).status().unwrap();
    assert!(copy.success());

    // both checkers see the damage
    expect_code(
        &rborg(dir, &home, &["check", &a]),
        1,
        "rborg check (damaged)",
    );
    expect_code(&borg(dir, &home, &["check", &b]), 1, "borg check (damaged)");

    // repair: rborg on A, borg on its twin B
    let rout = expect_code(
        &rborg(
            dir,
            &home,
            &["check", "-v", "--repair", "--verify-data", &a],
        ),
        0,
        "rborg check --repair",
    );
    expect_code(
        &borg(
            dir,
            &home,
            &["check", "-v", "--repair", "--verify-data", &b],
        ),
        0,
        "borg check --repair",
    );
    assert!(rout.contains("Repository manifest not found!"), "{rout}");
    assert!(rout.contains(&format!(
        "{}, integrity error",
        hex::encode(targets.other_first)
    )));
    assert!(
        rout.contains("big.bin: New missing file chunk detected (Byte 16384-19980"),
        "{rout}"
    );
    assert!(rout.contains("item metadata chunk missing"), "{rout}");

    // clean afterwards, for borg and for rborg
    ok(
        &borg(dir, &home, &["check", "--verify-data", &a]),
        "borg check after rborg repair",
    );
    expect_code(
        &rborg(dir, &home, &["check", &a]),
        0,
        "rborg check after repair",
    );
    // and rborg finds borg's repair clean too (borg 1.2.4 keeps stale archive TAMs, which the
    // check ignores as borg 1.2.4 does)
    expect_code(
        &rborg(dir, &home, &["check", "--verify-data", &b]),
        0,
        "rborg check after borg repair",
    );

    // same archives, same items, same broken files
    let names = archive_names(dir, &home, &a);
    assert_eq!(names, ["a1", "a3", "a4"]);
    assert_eq!(names, archive_names(dir, &home, &b));
    for name in &names {
        let la = health_listing(dir, &home, &format!("{a}::{name}"));
        let lb = health_listing(dir, &home, &format!("{b}::{name}"));
        assert_eq!(la, lb, "archive {name} differs after repair");
    }
    let a1 = health_listing(dir, &home, &format!("{a}::a1"));
    assert!(a1.contains("broken - src/big.bin"), "{a1}");
    assert!(a1.contains("broken - src/other.bin"), "{a1}");
    assert!(a1.contains("healthy - src/small.txt"), "{a1}");
    assert!(health_listing(dir, &home, &format!("{a}::a4")).is_empty());
    // the same content objects (zero replacements included); item streams and metadata
    // differ in the replacement chunks' stored sizes (lz4 implementations) and archive TAMs
    assert_eq!(content_ids(&repo_a), content_ids(&repo_b));

    // healthy files are intact, broken ones are zero exactly where the lost chunks were
    let out = dir.join("out-a1");
    let warned = extract(&home, &format!("{a}::a1"), &out, 1);
    assert!(
        warned.contains("src/big.bin: File has damaged (all-zero) chunks."),
        "{warned}"
    );
    assert_eq!(
        std::fs::read(out.join("src/small.txt")).unwrap(),
        b"small file\n"
    );
    let mut expect_big = big.clone();
    expect_big[4 * BLOCK..].fill(0);
    assert_eq!(std::fs::read(out.join("src/big.bin")).unwrap(), expect_big);
    let mut expect_other = other.clone();
    expect_other[..BLOCK].fill(0);
    assert_eq!(
        std::fs::read(out.join("src/other.bin")).unwrap(),
        expect_other
    );

    // a new backup brings the lost chunks back; the next repair heals the old archives
    std::fs::remove_file(src.join("extra.txt")).unwrap();
    create("a5", "src");
    let heal = expect_code(
        &rborg(dir, &home, &["check", "-v", "--repair", &a]),
        0,
        "rborg check --repair (heal)",
    );
    assert!(
        heal.contains("Healed previously missing file chunk"),
        "{heal}"
    );
    assert!(
        heal.contains("src/big.bin: Completely healed previously damaged file!"),
        "{heal}"
    );
    ok(
        &borg(dir, &home, &["check", "--verify-data", &a]),
        "borg check after heal",
    );
    let a1 = health_listing(dir, &home, &format!("{a}::a1"));
    assert!(!a1.contains("broken"), "{a1}");
    let out = dir.join("out-a1-healed");
    extract(&home, &format!("{a}::a1"), &out, 0);
    assert_eq!(std::fs::read(out.join("src/big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(out.join("src/other.bin")).unwrap(), other);
}

#[test]
fn duplicate_archive_names_and_empty_repository() {
    if !borg_available("check manifest rebuild test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let src = dir.join("src");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data\n").unwrap();
    let repo = dir.join("repo");
    let r = repo.to_str().unwrap().to_string();
    ok(
        &borg(dir, &home, &["init", "-e", "repokey", &r]),
        "borg init",
    );
    ok(
        &borg(dir, &home, &["create", &format!("{r}::same"), "src"]),
        "borg create",
    );
    // a second archive metadata object named "same" (as borg's
    // test_manifest_rebuild_duplicate_archive writes it), then the manifest is lost
    let mut repository = open(&repo);
    let cdata = read_manifest_object(&mut repository).unwrap();
    let key = load_key(&mut repository, &cdata, &mut FixedPassphrase, &std_env)
        .unwrap()
        .key;
    let s = |v: &str| rmpv::Value::from(v);
    let meta = rmpv::Value::Map(vec![
        (s("cmdline"), rmpv::Value::Array(vec![])),
        (s("hostname"), s("foo")),
        (s("items"), rmpv::Value::Array(vec![])),
        (s("name"), s("same")),
        (s("time"), s("2016-12-15T18:49:51.849711")),
        (s("username"), s("bar")),
        (s("version"), rmpv::Value::from(1)),
    ]);
    let data = rborg_crypto::msgpack::pack(&meta);
    let id = key.id_hash(&data);
    put_metadata_object(&mut repository, &key, &id, &data, dir.join("nonce")).unwrap();
    repository.delete(&MANIFEST_ID).unwrap();
    repository.commit(false, 0.1).unwrap();
    repository.close().unwrap();
    expect_code(
        &borg(dir, &home, &["check", &r]),
        1,
        "borg check (no manifest)",
    );
    let out = expect_code(
        &rborg(dir, &home, &["check", "-v", "--repair", &r]),
        0,
        "rborg check --repair",
    );
    assert!(
        out.contains("Duplicate archive name same, storing as same.1"),
        "{out}"
    );
    let names = archive_names(dir, &home, &r);
    assert_eq!(names, ["same", "same.1"]);
    ok(
        &borg(dir, &home, &["check", &r]),
        "borg check after rebuild",
    );

    // a repository without any object: borg's message and exit code 1
    let mut repository = open(&repo);
    for id in all_object_ids(&mut repository).unwrap() {
        repository.delete(&id).unwrap();
    }
    repository.commit(false, 0.1).unwrap();
    repository.close().unwrap();
    let out = expect_code(&rborg(dir, &home, &["check", &r]), 1, "rborg check (empty)");
    assert!(
        out.contains("Repository contains no apparent data at all, cannot continue check/repair."),
        "{out}"
    );
}

#[test]
fn upgrade_tam_switches_and_archive_tams() {
    if !borg_available("upgrade --tam interop test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let src = dir.join("src");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data\n").unwrap();
    let repo = dir.join("repo");
    let r = repo.to_str().unwrap().to_string();
    ok(
        &borg(dir, &home, &["init", "-e", "repokey", &r]),
        "borg init",
    );
    ok(
        &borg(dir, &home, &["create", &format!("{r}::one"), "src"]),
        "borg create",
    );

    // --disable-tam: borg accepts a manifest without TAM afterwards
    ok(
        &rborg(dir, &home, &["upgrade", "--disable-tam", &r]),
        "rborg upgrade --disable-tam",
    );
    let listed = ok(&borg(dir, &home, &["list", "--debug", &r]), "borg list");
    assert!(listed.contains("one"), "{listed}");
    // --tam: the manifest is TAM-verified again and the key requires it
    let out = ok(
        &rborg(dir, &home, &["upgrade", "--tam", &r]),
        "rborg upgrade --tam",
    );
    assert!(out.contains("Key updated"), "{out}");
    let debug = text(&borg(dir, &home, &["list", "--debug", &r]));
    assert!(debug.contains("TAM-verified manifest"), "{debug}");

    // --archives-tam: an archive stored without TAM gets one, others are left as they are
    let mut repository = open(&repo);
    let cdata = read_manifest_object(&mut repository).unwrap();
    let key = load_key(&mut repository, &cdata, &mut FixedPassphrase, &std_env)
        .unwrap()
        .key;
    let mut manifest = Manifest::decode(&key, &cdata, "test").unwrap();
    let one = ArchiveMeta::load_by_name(&mut repository, &key, &manifest, "one", false).unwrap();
    assert!(one.tam_verified);
    let mut map = one.raw.as_map().unwrap().clone();
    for (k, v) in &mut map {
        if rborg_crypto::msgpack::key_bytes(k) == b"name" {
            *v = rmpv::Value::from("untagged");
        }
    }
    let data = rborg_crypto::msgpack::pack(&rmpv::Value::Map(map));
    let id = key.id_hash(&data);
    put_metadata_object(&mut repository, &key, &id, &data, dir.join("nonce")).unwrap();
    manifest.archives.insert(
        "untagged".into(),
        rborg_archive::ArchiveEntry {
            id,
            time: manifest.archives["one"].time.clone(),
        },
    );
    manifest
        .write(&mut repository, &key, dir.join("nonce"))
        .unwrap();
    repository.commit(false, 0.1).unwrap();
    repository.close().unwrap();
    let out = ok(
        &rborg(dir, &home, &["upgrade", "--archives-tam", &r]),
        "rborg upgrade --archives-tam",
    );
    assert!(out.contains("Archive TAM present: one"), "{out}");
    assert!(out.contains("Added archive TAM:   untagged"), "{out}");
    ok(
        &borg(dir, &home, &["check", "--verify-data", &r]),
        "borg check after --archives-tam",
    );
    let mut repository = open(&repo);
    let cdata = read_manifest_object(&mut repository).unwrap();
    let manifest = Manifest::decode(&key, &cdata, "test").unwrap();
    let tagged =
        ArchiveMeta::load_by_name(&mut repository, &key, &manifest, "untagged", true).unwrap();
    assert!(tagged.tam_verified);
    assert!(
        !repository.contains(&id).unwrap(),
        "the untagged metadata object is deleted"
    );
    repository.close().unwrap();
}
