//! `extract_archive` over an item stream of many batches ([`PREFETCH`] item metadata chunks
//! each), where batches plan content that is then not read: a partial extraction whose link
//! groups' masters are excluded gives every extracted link the master's chunks, and the
//! second link of a group becomes a hard link to the first, dropping the chunks planned for
//! it. Chunks a batch planned and did not take must not reach the files of the next batch,
//! nor hold up its content, in the pipelined path and in the sequential one (`--progress`).
//! No borg needed.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::channel;
use std::time::Duration;

use rborg_archive::archive::{ArchiveMeta, PREFETCH};
use rborg_archive::extract::{extract_archive, ExtractEvent, ExtractOptions, ExtractSummary};
use rborg_archive::init::init_repository;
use rborg_archive::keys::{load_key, EnvironmentPassphrase};
use rborg_archive::manifest::{read_manifest_object, Operation};
use rborg_archive::patterns::{Pattern, PatternMatcher, PatternStyle};
use rborg_archive::writer::{ArchiveInfo, ArchiveWriter, ChunkStore};
use rborg_archive::{Item, Manifest};
use rborg_chunker::ChunkerParams;
use rborg_crypto::{Key, KeyType};
use rborg_repository::{LocalRepository, OpenOptions};
use rborg_testkit::noise;

/// Link groups in the archive: each a master (excluded) and two links (extracted).
const GROUPS: usize = 120;

/// Every item carries an extended attribute this big (not restored: `--noxattrs`), so that
/// the item stream spans many batches.
const PADDING: usize = 40_000;

/// The environment of key lookups: the test's own `BORG_BASE_DIR`, nothing else.
fn env(dir: &Path) -> impl Fn(&str) -> Option<String> + '_ {
    move |k: &str| (k == "BORG_BASE_DIR").then(|| dir.join("home").display().to_string())
}

/// The repository's key, as a command loads it (an unencrypted repository: no passphrase is
/// asked for).
fn load(repo: &mut LocalRepository, dir: &Path) -> Key {
    let cdata = read_manifest_object(repo).unwrap();
    load_key(repo, &cdata, &mut EnvironmentPassphrase, &env(dir))
        .unwrap()
        .key
}

fn content(group: usize) -> Vec<u8> {
    noise(group as u64 + 1, 1000 + group * 37)
}

fn file_item(path: String, group: usize) -> Item {
    let mut item = Item::default();
    item.path = path.into_bytes();
    item.mode = Some(0o100644);
    item.mtime = Some(1_600_000_000_000_000_000);
    item.xattrs = Some(vec![(
        b"user.padding".to_vec(),
        noise(group as u64 + 1000, PADDING),
    )]);
    item
}

/// A repository holding archive "links": groups `g{i}/m` (the master, with content) and
/// its links `g{i}/a` and `g{i}/b`.
fn make_archive(dir: &Path) {
    let mut repo = LocalRepository::create(&dir.join("repo"), &OpenOptions::exclusive()).unwrap();
    init_repository(
        &mut repo,
        KeyType::Plaintext,
        "repo",
        "repo",
        &mut EnvironmentPassphrase,
        &env(dir),
    )
    .unwrap();
    let key = load(&mut repo, dir);
    let mut manifest = Manifest::load(&mut repo, &key, &[Operation::Write], "repo").unwrap();
    let store = ChunkStore::open(
        &mut repo,
        &key,
        rborg_compress::CompressionSpec::default(),
        dir.join("nonce"),
    )
    .unwrap();
    let mut writer = ArchiveWriter::new(&key).unwrap();
    for group in 0..GROUPS {
        let data = content(group);
        let mut master = file_item(format!("g{group:03}/m"), group);
        master.chunks = Some(
            writer
                .add_content(&store, &data[..], &ChunkerParams::default())
                .unwrap(),
        );
        master.size = Some(data.len() as u64);
        master.hardlink_master = Some(true);
        writer.add_item(&store, &master).unwrap();
        for link in ["a", "b"] {
            let mut item = file_item(format!("g{group:03}/{link}"), group);
            item.source = Some(master.path.clone());
            writer.add_item(&store, &item).unwrap();
        }
    }
    writer
        .finish(&store, &mut manifest, "links", &ArchiveInfo::default())
        .unwrap();
    store.commit(&mut manifest).unwrap();
}

/// Extracts everything but the masters into `dir/<target>`; fails if it takes minutes (a
/// content reader waiting to hand over chunks nobody takes).
fn extract_links(dir: &Path, target: &str, progress: bool) -> (ExtractSummary, Vec<String>) {
    let (dir, target) = (dir.to_path_buf(), dir.join(target));
    let (done, finished) = channel();
    std::thread::spawn(move || {
        let mut repo = LocalRepository::open(&dir.join("repo"), &OpenOptions::default()).unwrap();
        let key = load(&mut repo, &dir);
        let manifest = Manifest::load(&mut repo, &key, &[Operation::Read], "repo").unwrap();
        let meta = ArchiveMeta::load_by_name(&mut repo, &key, &manifest, "links", true).unwrap();
        assert!(
            meta.items.len() > 4 * PREFETCH,
            "the item stream should span several batches, has {} chunks",
            meta.items.len()
        );
        let mut matcher = PatternMatcher::new();
        matcher.add_exclude(Pattern::parse("*/m", PatternStyle::Fnmatch).unwrap());
        let opts = ExtractOptions {
            no_xattrs: true,
            progress,
            ..ExtractOptions::default()
        };
        std::fs::create_dir(&target).unwrap();
        let mut warnings = Vec::new();
        let summary = extract_archive(
            &mut repo,
            &key,
            &meta,
            &mut matcher,
            &target,
            &opts,
            None,
            &mut |event| {
                if let ExtractEvent::Warning(w) = event {
                    warnings.push(w)
                }
            },
        )
        .unwrap();
        // closed (its lock released) before the next extraction opens the repository: both
        // would hold it under the same owner id (this process)
        drop(repo);
        done.send((summary, warnings)).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(300))
        .expect("the extraction finished")
}

fn assert_links(target: &Path) {
    for group in 0..GROUPS {
        let a = target.join(format!("g{group:03}/a"));
        let b = target.join(format!("g{group:03}/b"));
        assert_eq!(
            std::fs::read(&a).unwrap(),
            content(group),
            "{}",
            a.display()
        );
        assert_eq!(
            std::fs::metadata(&a).unwrap().ino(),
            std::fs::metadata(&b).unwrap().ino(),
            "{} is a hard link to {}",
            b.display(),
            a.display()
        );
        assert!(!target.join(format!("g{group:03}/m")).exists());
    }
}

#[test]
fn chunks_planned_and_not_taken_are_passed_over_across_batches() {
    let tmp = tempfile::tempdir().unwrap();
    make_archive(tmp.path());
    for (target, progress) in [("pipelined", false), ("sequential", true)] {
        let (summary, warnings) = extract_links(tmp.path(), target, progress);
        assert_eq!(warnings, Vec::<String>::new(), "{target}");
        assert_eq!(summary.items, 2 * GROUPS as u64, "{target}: the links");
        let expected: usize = (0..GROUPS).map(|g| content(g).len()).sum();
        assert_eq!(
            summary.bytes, expected as u64,
            "{target}: content read once per group"
        );
        assert_links(&tmp.path().join(target));
    }
}
