//! Items byte for byte: borg 1.2.4 and `rborg borg create` archive the same tree into one
//! repository, and borg's own code (`Archive.iter_items`, run by `/usr/bin/python3`) must decode
//! the same item dicts from both archives, in the same order: every key borg writes (mode,
//! owner names and ids, ns times, atime only with `--atime`, sizes, chunk lists, link targets,
//! hard link masters, xattrs with empty values, POSIX ACLs with borg's text quirks, devices and
//! fifos as root), with `--numeric-ids` as well.
//!
//! These tests need `/usr/bin/borg`; without it they print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1` (CI sets it).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use rborg_testkit::{borg_available, borg_command, ok, python_command, BORG};

const PASSPHRASE: &str = "items-interop-pw";

fn command(cwd: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = borg_command(program, args, cwd, &cwd.join("home"), PASSPHRASE);
    cmd.env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env("TZ", "UTC")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null());
    cmd
}

fn borg(cwd: &Path, args: &[&str]) -> Output {
    command(cwd, BORG, args).output().unwrap()
}

fn rborg(cwd: &Path, args: &[&str]) -> Output {
    let mut full = vec!["borg"];
    full.extend_from_slice(args);
    command(cwd, env!("CARGO_BIN_EXE_rborg"), &full)
        .output()
        .unwrap()
}

/// Builds the tree with Python (ACLs as the kernel's binary xattrs, so no `setfacl` is needed).
const MAKE_TREE: &str = r#"
import os, stat, struct, sys
src = sys.argv[1]
root = os.geteuid() == 0
def acl(*entries):
    return struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i) for t, p, i in entries)
U = 0xffffffff
os.makedirs(os.path.join(src, 'dir/sub'))
os.makedirs(os.path.join(src, 'acl-default-dir'))
os.makedirs(os.path.join(src, 'acl-access-dir'))
import random
with open(os.path.join(src, 'data.bin'), 'wb') as f:
    f.write(random.Random(int(sys.argv[2])).randbytes(3_000_000))
with open(os.path.join(src, 'dir/sub/ünï cødé.txt'), 'w') as f:
    f.write('text\n' * 1000)
open(os.path.join(src, 'empty'), 'w').close()
with open(os.path.join(src, 'sparse.img'), 'wb') as f:
    f.seek(5 << 20); f.write(b'x' * 4096); f.truncate(9 << 20)
os.symlink('dir/sub', os.path.join(src, 'link'))
os.symlink('/nowhere', os.path.join(src, 'dangling'))
os.link(os.path.join(src, 'data.bin'), os.path.join(src, 'dir/hardlink'))
os.mkfifo(os.path.join(src, 'fifo'))
os.setxattr(os.path.join(src, 'empty'), 'user.empty', b'')
os.setxattr(os.path.join(src, 'data.bin'), 'user.k', b'v\x00\xff')
acl_file = os.path.join(src, 'acl-file')
open(acl_file, 'w').close()
os.chmod(acl_file, 0o640)
if root:
    # a named user with a name, one without, a mask that limits it (the effective-rights tab)
    os.setxattr(acl_file, 'system.posix_acl_access',
                acl((1, 6, U), (2, 4, 65534), (2, 7, 4242), (4, 4, U), (8, 6, 65534), (0x10, 4, U), (0x20, 0, U)))
    os.setxattr(os.path.join(src, 'acl-default-dir'), 'system.posix_acl_default',
                acl((1, 7, U), (2, 7, 65534), (4, 5, U), (0x10, 7, U), (0x20, 5, U)))
    os.setxattr(os.path.join(src, 'acl-access-dir'), 'system.posix_acl_access',
                acl((1, 7, U), (4, 5, U), (8, 6, 4343), (0x10, 7, U), (0x20, 5, U)))
    os.mknod(os.path.join(src, 'chardev'), 0o600 | stat.S_IFCHR, os.makedev(1, 7))
    os.mknod(os.path.join(src, 'blockdev'), 0o600 | stat.S_IFBLK, os.makedev(7, 200))
    os.chown(os.path.join(src, 'empty'), 1234, 5678)
    os.chown(os.path.join(src, 'dir'), 65534, 65534)
    os.lchown(os.path.join(src, 'link'), 4242, 4343)
os.utime(os.path.join(src, 'dir/sub/ünï cødé.txt'), ns=(1_111_111_111_123_456_789, 1_222_222_222_987_654_321))
"#;

/// Prints every item of an archive as borg decodes it, one per line.
const DUMP_ITEMS: &str = r#"
import stat, sys
from borg.logger import setup_logging
setup_logging(level='warning')
from borg.repository import Repository
from borg.helpers import Manifest
from borg.archive import Archive
with Repository(sys.argv[1]) as repo:
    manifest, key = Manifest.load(repo, Manifest.NO_OPERATION_CHECK)
    archive = Archive(repo, key, manifest, sys.argv[2])
    for item in archive.iter_items():
        d = item.as_dict()
        # whichever tool archives first reads the symlinks and lists the directories, which
        # moves their atimes before the second tool looks (file contents are read O_NOATIME)
        if stat.S_ISLNK(d['mode']) or stat.S_ISDIR(d['mode']):
            d.pop('atime', None)
        print(repr(sorted(d.items())))
"#;

fn dump(dir: &Path, repo: &str, archive: &str) -> Vec<String> {
    let out = python_command(DUMP_ITEMS)
        .args([repo, archive])
        .env("BORG_BASE_DIR", dir.join("home"))
        .env("BORG_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    String::from_utf8(ok(&out, "dumping items with borg's code").into_bytes())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn compare(mode: &str, extra: &[&str]) {
    if !borg_available("items interop test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string();
    ok(
        &python_command(MAKE_TREE)
            .arg(dir.join("src"))
            .arg(&seed)
            .output()
            .unwrap(),
        "making the tree",
    );
    let repo = dir.join("repo").display().to_string();
    ok(&borg(dir, &["init", "-e", mode, &repo]), "borg init");
    let mut args = vec!["create"];
    args.extend_from_slice(extra);
    let (b, r) = (format!("{repo}::b"), format!("{repo}::r"));
    let mut borg_args = args.clone();
    borg_args.extend([b.as_str(), "src"]);
    ok(&borg(dir, &borg_args), "borg create");
    let mut rborg_args = args;
    rborg_args.extend([r.as_str(), "src"]);
    ok(&rborg(dir, &rborg_args), "rborg create");
    let (by_borg, by_rborg) = (dump(dir, &repo, "b"), dump(dir, &repo, "r"));
    assert!(by_borg.len() >= 12, "{by_borg:#?}");
    if nix::unistd::geteuid().is_root() && !extra.contains(&"--noacls") {
        // the ACL cases are really there: the effective-rights tab and an empty default ACL
        let all = by_borg.join("\n");
        assert!(all.contains(r":rwx\t:4242"), "{all}");
        assert!(all.contains("('acl_default', b'')"), "{all}");
    }
    let differing: Vec<String> = by_borg
        .iter()
        .zip(&by_rborg)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| format!("borg : {x}\nrborg: {y}"))
        .take(6)
        .collect();
    assert!(
        differing.is_empty() && by_borg.len() == by_rborg.len(),
        "{mode} {extra:?}: items differ ({} vs {} items)\n{}",
        by_borg.len(),
        by_rborg.len(),
        differing.join("\n")
    );
}

#[test]
fn items_equal_borgs_default_options() {
    compare("repokey", &[]);
}

#[test]
fn items_equal_borgs_with_numeric_ids_and_atime() {
    compare("none", &["--numeric-ids", "--atime"]);
}

#[test]
fn items_equal_borgs_without_acls_xattrs_and_flags() {
    compare(
        "authenticated-blake2",
        &["--noacls", "--noxattrs", "--noflags", "--sparse"],
    );
}
