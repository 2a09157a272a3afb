//! Item encoding against vectors borg 1.2.4 itself packed (`Item(...).as_dict()` through borg's
//! `msgpack.packb`), covering keys and value shapes a normal `borg create` on Linux does not
//! produce: ACLs of every kind, bsdflags, birthtime, negative and 2**62 timestamps, `user: None`,
//! `chunks_healthy`, `hardlink_master: False`, `part`, big uids and a non-UTF-8 link target.
//!
//! The vectors are committed below, so the decoding tests run without borg. When borg is
//! installed, [`vectors_are_what_borg_packs`] re-runs the generator [`GENERATOR`] with borg's
//! own modules and checks the committed vectors are still what borg produces (skipped with a
//! notice without borg, unless `RBORG_REQUIRE_BORG=1`).

use rborg_archive::item::{Item, ItemUnpacker, S_IFBLK, S_IFLNK};

/// The generator: run with `/usr/bin/python3` (borg 1.2.4's modules), one hex line per item.
const GENERATOR: &str = r#"import sys
from borg.item import Item, ArchiveItem
from borg.helpers import msgpack
from borg.helpers.datastruct import StableDict
from borg.cache import ChunkListEntry
items = []
c = lambda i, s, cs: ChunkListEntry(bytes([i]) * 32, s, cs)
it = Item(path='home/user/fïle ✓', mode=0o100644, uid=1000, gid=1000, user='user', group='users',
          mtime=1700000000123456789, atime=1700000001000000000, ctime=1700000002999999999,
          birthtime=-1000000001, xattrs=StableDict({b'user.a': b'1', b'security.selinux': b'x\x00'}),
          acl_access=b'user::rw-\ngroup::r--\nother::r--\n', bsdflags=0x80000,
          chunks=[c(1, 4096, 2100), c(2, 70000, 70100)], size=74096)
items.append(it)
items.append(Item(path='broken', mode=0o100600, uid=0, gid=0, user=None, group=None, mtime=0,
                  chunks=[c(0, 10, 0)], chunks_healthy=[c(9, 10, 40)], size=10, hardlink_master=False))
items.append(Item(path='dev/sda', mode=0o60660, uid=0, gid=6, user='root', group='disk', rdev=0x801, mtime=2**62))
items.append(Item(path='part.borg_part_1', mode=0o100644, part=1, chunks=[], size=0, mtime=-5))
items.append(Item(path='link', mode=0o120777, source='target/\udcff', uid=2**31, gid=4294967294, mtime=1))
items.append(Item(path='dir', mode=0o41777, acl_default=b'user::rwx\n', acl_nfs4=b'A::OWNER@:rwx', acl_extended=b'e', mtime=1))
for i in items:
    sys.stdout.write(msgpack.packb(i.as_dict()).hex() + '\n')
"#;

/// Output of [`GENERATOR`].
const VECTORS: &[&str] = &[
    "8faa61636c5f616363657373da0020757365723a3a72772d0a67726f75703a3a722d2d0a6f746865723a3a722d2d0aa56174696d65cf17979cfe71c4ca00a9626972746874696d65d2c46535ffa8627364666c616773ce00080000a66368756e6b739293da00200101010101010101010101010101010101010101010101010101010101010101cd1000cd083493da00200202020202020202020202020202020202020202020202020202020202020202ce00011170ce000111d4a56374696d65cf17979cfee8fa5dffa3676964cd03e8a567726f7570a57573657273a46d6f6465cd81a4a56d74696d65cf17979cfe3d85cd15a470617468b3686f6d652f757365722f66c3af6c6520e29c93a473697a65ce00012170a3756964cd03e8a475736572a475736572a678617474727382b073656375726974792e73656c696e7578a27800a6757365722e61a131",
    "8ba66368756e6b739193da002000000000000000000000000000000000000000000000000000000000000000000a00ae6368756e6b735f6865616c7468799193da002009090909090909090909090909090909090909090909090909090909090909090a28a367696400a567726f7570c0af686172646c696e6b5f6d6173746572c2a46d6f6465cd8180a56d74696d6500a470617468a662726f6b656ea473697a650aa375696400a475736572c0",
    "88a367696406a567726f7570a46469736ba46d6f6465cd61b0a56d74696d65cf4000000000000000a470617468a76465762f736461a472646576cd0801a375696400a475736572a4726f6f74",
    "86a66368756e6b7390a46d6f6465cd81a4a56d74696d65fba47061727401a470617468b0706172742e626f72675f706172745f31a473697a6500",
    "86a3676964cefffffffea46d6f6465cda1ffa56d74696d6501a470617468a46c696e6ba6736f75726365a87461726765742fffa3756964ce80000000",
    "86ab61636c5f64656661756c74aa757365723a3a7277780aac61636c5f657874656e646564a165a861636c5f6e667334ad413a3a4f574e4552403a727778a46d6f6465cd43ffa56d74696d6501a470617468a3646972",
];

fn vectors() -> Vec<Vec<u8>> {
    VECTORS.iter().map(|h| hex::decode(h).unwrap()).collect()
}

#[test]
fn every_vector_roundtrips_byte_exactly() {
    for (i, v) in vectors().iter().enumerate() {
        let item = Item::decode(v).unwrap();
        assert_eq!(&item.encode(), v, "vector {i}");
        // nothing but `user: None` / `group: None` falls back to the verbatim store
        for (k, val) in &item.extra {
            assert!(
                val.is_nil() && (k == b"user" || k == b"group"),
                "vector {i}: unexpected extra {k:?}"
            );
        }
    }
}

#[test]
fn fields_decode_to_borg_values() {
    let v = vectors();
    let full = Item::decode(&v[0]).unwrap();
    assert_eq!(full.path, "home/user/f\u{ef}le \u{2713}".as_bytes());
    assert_eq!(full.mode, Some(0o100644));
    assert_eq!((full.uid, full.gid), (Some(1000), Some(1000)));
    assert_eq!(full.user.as_deref(), Some(&b"user"[..]));
    assert_eq!(full.mtime, Some(1_700_000_000_123_456_789));
    assert_eq!(full.ctime, Some(1_700_000_002_999_999_999));
    assert_eq!(full.birthtime, Some(-1_000_000_001));
    assert_eq!(full.bsdflags, Some(0x80000));
    assert_eq!(
        full.acl_access.as_deref(),
        Some(&b"user::rw-\ngroup::r--\nother::r--\n"[..])
    );
    let x = full.xattrs.as_ref().unwrap();
    assert_eq!(x[0], (b"security.selinux".to_vec(), b"x\0".to_vec()));
    assert_eq!(x[1], (b"user.a".to_vec(), b"1".to_vec()));
    let chunks = full.chunks.as_ref().unwrap();
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        (chunks[1].id, chunks[1].size, chunks[1].csize),
        ([2; 32], 70000, 70100)
    );
    assert_eq!(full.size, Some(74096));
    assert_eq!(full.get_size(true), 2100 + 70100);

    let broken = Item::decode(&v[1]).unwrap();
    assert_eq!(broken.user, None);
    assert_eq!(broken.hardlink_master, Some(false));
    assert_eq!(broken.chunks_healthy.as_ref().unwrap()[0].id, [9; 32]);
    assert!(broken.keys().iter().any(|k| k == b"user"));

    let dev = Item::decode(&v[2]).unwrap();
    assert_eq!(dev.file_type(), S_IFBLK);
    assert_eq!(dev.rdev, Some(0x801));
    assert_eq!(dev.mtime, Some(1 << 62));

    let part = Item::decode(&v[3]).unwrap();
    assert_eq!(part.part, Some(1));
    assert_eq!(part.mtime, Some(-5));
    assert_eq!(part.chunks.as_deref(), Some(&[][..]));

    let link = Item::decode(&v[4]).unwrap();
    assert_eq!(link.file_type(), S_IFLNK);
    assert_eq!(link.source.as_deref(), Some(&b"target/\xff"[..]));
    assert_eq!(link.uid, Some(1 << 31));
    assert_eq!(link.gid, Some(4_294_967_294));
    // borg: len(item.source) of the surrogate-escaped str
    assert_eq!(link.get_size(false), 8);
    assert!(!link.is_hardlink_slave());

    let dir = Item::decode(&v[5]).unwrap();
    assert!(dir.is_dir());
    assert_eq!(dir.acl_default.as_deref(), Some(&b"user::rwx\n"[..]));
    assert_eq!(dir.acl_nfs4.as_deref(), Some(&b"A::OWNER@:rwx"[..]));
    assert_eq!(dir.acl_extended.as_deref(), Some(&b"e"[..]));
}

#[test]
fn stream_of_vectors_unpacks_at_every_split() {
    let v = vectors();
    let stream: Vec<u8> = v.concat();
    for cut in (1..stream.len()).step_by(7) {
        let mut u = ItemUnpacker::new();
        let mut got = Vec::new();
        for piece in [&stream[..cut], &stream[cut..]] {
            u.feed(piece);
            while let Some(raw) = u.next_raw().unwrap() {
                got.push(raw.to_vec());
            }
        }
        u.finish().unwrap();
        assert_eq!(got, v, "split at {cut}");
    }
}

#[test]
fn truncated_and_corrupted_vectors_fail_cleanly() {
    for v in vectors() {
        for len in 0..v.len() {
            assert!(
                Item::decode(&v[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
        let mut bad = v.clone();
        bad[0] = 0x93; // an array, not a map
        assert!(Item::decode(&bad).is_err());
    }
}

#[test]
fn vectors_are_what_borg_packs() {
    if !std::path::Path::new("/usr/bin/python3").exists()
        || !std::path::Path::new("/usr/bin/borg").exists()
    {
        assert!(
            std::env::var("RBORG_REQUIRE_BORG").as_deref() != Ok("1"),
            "RBORG_REQUIRE_BORG=1 but borg is missing"
        );
        eprintln!("borg is not installed: skipping the vector regeneration check");
        return;
    }
    let out = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(GENERATOR)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines, VECTORS);
}
