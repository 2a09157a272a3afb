//! Reading archives that real borg 1.2.4 wrote: repositories in modes none, repokey and
//! keyfile-blake2 with regular, empty, sparse and multi-chunk files, directories, symlinks,
//! hardlinks, fifos, devices (when root), xattrs and non-ASCII names. Every item must decode and
//! re-encode to the exact bytes of borg's item stream, the archive metadata must re-encode
//! exactly, and file contents read through rborg must equal the source files.
//!
//! Needs `/usr/bin/borg` and `/usr/bin/python3`. Without them the tests print a notice and
//! pass, unless `RBORG_REQUIRE_BORG=1` (CI sets it), in which case they fail.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rborg_archive::archive::{ArchiveMeta, ContentReader};
use rborg_archive::item::{Item, ItemUnpacker};
use rborg_archive::keys::{load_key, PassphraseProvider};
use rborg_archive::manifest::read_manifest_object;
use rborg_archive::Manifest;
use rborg_crypto::Passphrase;
use rborg_repository::{LocalRepository, OpenOptions};
use rborg_testkit::{borg_available, borg_command, noise, ok, python, python_output, BORG};

const PASSPHRASE: &str = "read-test-pw";

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

/// Builds the source tree under `dir/src`; returns whether device nodes were made.
fn make_tree(dir: &Path, seed: u64) -> bool {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    std::fs::create_dir_all(src.join("many")).unwrap();
    std::fs::write(src.join("small.txt"), b"hello borg\n").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(src.join("dir/sub/ünïcødé 名前 ✓.txt"), "unicode content\n").unwrap();
    std::fs::write(src.join("big.bin"), noise(seed, 3_500_000)).unwrap();
    std::fs::write(src.join("hardlink-a"), noise(seed + 1, 70_000)).unwrap();
    std::fs::hard_link(src.join("hardlink-a"), src.join("dir/hardlink-b")).unwrap();
    std::os::unix::fs::symlink("small.txt", src.join("link-to-small")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target ü", src.join("dangling")).unwrap();
    // Enough items for an item stream of several chunks: > 1 MiB of item metadata per
    // archive, while the items chunker (buzhash 15,19,17) cuts at most every 512 KiB.
    let long = "long-name-".repeat(12);
    for i in 0..4000 {
        std::fs::write(
            src.join(format!("many/{long}{i:04}")),
            noise(seed + 10 + i, (i % 50) as usize),
        )
        .unwrap();
    }
    // fifo, sparse file, xattrs and (as root) devices via Python's os module.
    let script = r#"
import os, sys
src = sys.argv[1]
os.mkfifo(os.path.join(src, 'fifo'))
with open(os.path.join(src, 'sparse'), 'wb') as f:
    f.write(b'start'); f.seek(2_000_000); f.write(b'middle'); f.truncate(4_000_000)
p = os.path.join(src, 'small.txt')
try:
    os.setxattr(p, 'user.comment', b'an xattr value')
    os.setxattr(p, 'user.binary', bytes(range(256)))
    os.setxattr(p, 'user.empty', b'')  # borg stores an empty value as None
    os.setxattr(os.path.join(src, 'dir'), 'user.dirattr', b'on a dir')
except OSError as e:
    print('xattrs unsupported:', e, file=sys.stderr)
devices = False
if os.geteuid() == 0:
    try:
        import stat
        os.mknod(os.path.join(src, 'chardev'), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(os.path.join(src, 'blockdev'), 0o600 | stat.S_IFBLK, os.makedev(7, 200))
        devices = True
    except OSError as e:
        print('mknod failed:', e, file=sys.stderr)
print('devices' if devices else 'nodevices')
"#;
    let out = python(script, [&src]);
    String::from_utf8_lossy(&out.stdout).contains("devices")
        && !String::from_utf8_lossy(&out.stdout).contains("nodevices")
}

fn borg(dir: &Path, args: &[&str]) {
    ok(
        &borg_command(BORG, args, dir, &dir.join("home"), PASSPHRASE)
            .output()
            .unwrap(),
        &format!("borg {args:?}"),
    );
}

struct Stats {
    items: usize,
    item_chunks: usize,
    spanning: usize,
    files_compared: usize,
    bytes_compared: u64,
}

fn check_repository(mode: &str, seed: u64) -> Stats {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let devices = make_tree(dir, seed);
    borg(dir, &["init", "-e", mode, "repo"]);
    borg(
        dir,
        &[
            "create",
            "--chunker-params",
            "10,14,12,4095",
            "--compression",
            "lz4",
            "repo::small-chunks",
            "src",
        ],
    );
    borg(
        dir,
        &[
            "create",
            "--compression",
            "zstd,3",
            "--comment",
            "second ✓",
            "repo::default-chunks",
            "src",
        ],
    );

    let base = dir.join("home");
    let env = move |k: &str| match k {
        "BORG_BASE_DIR" => Some(base.display().to_string()),
        _ => None,
    };
    let mut repo = LocalRepository::open(&dir.join("repo"), &OpenOptions::default()).unwrap();
    let cdata = read_manifest_object(&mut repo).unwrap();
    let key = load_key(&mut repo, &cdata, &mut Fixed, &env).unwrap().key;
    let manifest = Manifest::decode(&key, &cdata, "repo").unwrap();
    assert_eq!(manifest.archives.len(), 2);

    let mut stats = Stats {
        items: 0,
        item_chunks: 0,
        spanning: 0,
        files_compared: 0,
        bytes_compared: 0,
    };
    for (name, entry) in &manifest.archives {
        let meta = ArchiveMeta::load(&mut repo, &key, &entry.id, false).unwrap();
        assert_eq!(meta.name, name.as_bytes());
        assert_eq!(meta.version, 1);
        assert!(meta.cmdline.iter().any(|a| a == b"create"));
        if name == "default-chunks" {
            assert_eq!(meta.comment, "second ✓".as_bytes());
        }
        // The archive metadata (with the TAM borg 1.2.4 adds) re-encodes to the stored plaintext.
        assert!(meta.tam_verified, "{mode}/{name}: archive TAM");
        let stored = rborg_archive::archive::fetch_object(&mut repo, &key, &entry.id).unwrap();
        assert_eq!(
            meta.encode(),
            stored,
            "{mode}/{name}: archive metadata re-encoding"
        );

        // Every item re-encodes to exactly the bytes of borg's item stream.
        let stream = meta.item_stream(&mut repo, &key).unwrap();
        let items: Vec<Item> = meta
            .iter_items(&mut repo, &key)
            .collect::<Result<_, _>>()
            .unwrap();
        let reencoded: Vec<u8> = items.iter().flat_map(|i| i.encode()).collect();
        assert_eq!(reencoded.len(), stream.len());
        assert!(
            reencoded == stream,
            "{mode}/{name}: item stream re-encoding differs"
        );
        stats.items += items.len();
        stats.item_chunks += meta.items.len();

        // Items spanning chunk boundaries: replay the stream chunk by chunk and count items
        // that completed only after a later chunk was fed.
        let mut unpacker = ItemUnpacker::new();
        let mut boundaries = Vec::new();
        let mut fed = 0usize;
        for id in &meta.items {
            let chunk = rborg_archive::archive::fetch_object(&mut repo, &key, id).unwrap();
            fed += chunk.len();
            boundaries.push(fed);
            unpacker.feed(&chunk);
            while unpacker.next_item().unwrap().is_some() {}
        }
        unpacker.finish().unwrap();
        let mut offset = 0usize;
        let mut item_ends = std::collections::HashSet::new();
        for i in &items {
            offset += i.encode().len();
            item_ends.insert(offset);
        }
        stats.spanning += boundaries.iter().filter(|b| !item_ends.contains(b)).count();

        // Compare with the source tree.
        let by_path: BTreeMap<&[u8], &Item> =
            items.iter().map(|i| (i.path.as_slice(), i)).collect();
        for item in &items {
            let path = PathBuf::from(String::from_utf8(item.path.clone()).unwrap());
            let md = std::fs::symlink_metadata(dir.join(&path)).unwrap();
            assert_eq!(item.mode, Some(md.mode()), "{path:?} mode");
            assert_eq!(item.uid, Some(u64::from(md.uid())), "{path:?} uid");
            assert_eq!(item.gid, Some(u64::from(md.gid())), "{path:?} gid");
            assert_eq!(
                item.mtime,
                Some(md.mtime() * 1_000_000_000 + md.mtime_nsec()),
                "{path:?} mtime"
            );
            let ft = md.file_type();
            if ft.is_symlink() {
                let target = std::fs::read_link(dir.join(&path)).unwrap();
                assert_eq!(
                    item.source.as_deref(),
                    Some(target.as_os_str().as_encoded_bytes())
                );
            } else if ft.is_char_device() || ft.is_block_device() {
                assert_eq!(item.rdev, Some(md.rdev()), "{path:?} rdev");
            } else if ft.is_file() {
                let content_item = match &item.source {
                    Some(master) => by_path[master.as_slice()],
                    None => item,
                };
                let mut content = Vec::new();
                ContentReader::for_item(&mut repo, &key, content_item)
                    .read_to_end(&mut content)
                    .unwrap();
                let want = std::fs::read(dir.join(&path)).unwrap();
                assert!(content == want, "{mode}/{name}: content of {path:?}");
                if item.source.is_none() {
                    assert_eq!(item.size, Some(md.len()), "{path:?} size");
                    assert_eq!(item.get_size(false), md.len());
                }
                stats.files_compared += 1;
                stats.bytes_compared += want.len() as u64;
            }
        }
        let small = by_path[&b"src/small.txt"[..]];
        if xattrs_supported(&dir.join("src/small.txt")) {
            let x = small.xattrs.as_ref().expect("xattrs archived");
            assert!(x
                .iter()
                .any(|(k, v)| k == b"user.comment" && v == b"an xattr value"));
            let all_bytes: Vec<u8> = (0..=255u8).collect();
            assert!(x
                .iter()
                .any(|(k, v)| k == b"user.binary" && *v == all_bytes));
            let d = by_path[&b"src/dir"[..]]
                .xattrs
                .as_ref()
                .expect("dir xattrs archived");
            assert_eq!(d, &vec![(b"user.dirattr".to_vec(), b"on a dir".to_vec())]);
        }
        let big = by_path[&b"src/big.bin"[..]];
        let nchunks = big.chunks.as_ref().unwrap().len();
        if name == "small-chunks" {
            assert!(
                nchunks > 200,
                "big.bin has {nchunks} chunks with 4 KiB target"
            );
        }
        assert!(by_path.contains_key(&b"src/fifo"[..]));
        assert_eq!(by_path.contains_key(&b"src/chardev"[..]), devices);
        // The hardlink pair: one master with chunks, one slave pointing at it.
        let a = by_path[&b"src/hardlink-a"[..]];
        let b = by_path[&b"src/dir/hardlink-b"[..]];
        assert!(a.is_hardlink_slave() != b.is_hardlink_slave());
        // paths listed = paths in the tree
        assert_eq!(items.len(), walk(&dir.join("src")).len() + 1);
    }
    stats
}

/// Whether the source file really carries the xattrs the fixture tried to set.
fn xattrs_supported(path: &Path) -> bool {
    let out = python_output(
        "import os, sys; print('yes' if 'user.comment' in os.listxattr(sys.argv[1]) else 'no')",
        [path],
    );
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

fn run_mode(mode: &str, seed: u64) {
    if !borg_available("archive reading test") {
        return;
    }
    let s = check_repository(mode, seed);
    eprintln!(
        "{mode}: {} items in {} item chunks ({} chunk boundaries inside items), {} files / {} bytes compared",
        s.items, s.item_chunks, s.spanning, s.files_compared, s.bytes_compared
    );
    assert!(s.item_chunks > 2, "item stream should span several chunks");
    assert!(s.spanning > 0, "some item should span a chunk boundary");
}

#[test]
fn read_borg_mode_none() {
    run_mode("none", 1);
}

#[test]
fn read_borg_mode_repokey() {
    run_mode("repokey", 2);
}

#[test]
fn read_borg_mode_keyfile_blake2() {
    run_mode("keyfile-blake2", 3);
}
