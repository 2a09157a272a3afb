//! The FUSE file system over a [`Tree`]: borg 1.2's `FuseOperations` (`fuse.py`).
//!
//! Metadata comes from the items; file contents are read lazily, chunk by chunk, through a
//! small cache of decrypted chunks (borg's `BORG_MOUNT_DATA_CACHE_ENTRIES`, default the number
//! of CPUs), so reading a large file keeps memory bounded. The file system is read-only.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyXattr, Request,
};
use rborg_archive::archive::fetch_object;
use rborg_archive::item::{
    Item, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
};
use rborg_archive::{ChunkListEntry, Manifest};
use rborg_crypto::Key;
use rborg_repository::{ObjectId, Repository};

use crate::tree::{Inode, ItemFilter, Tree};

/// How long the kernel may cache entries and attributes (borg: 300 s; nothing changes).
const TTL: Duration = Duration::from_secs(300);

/// Ownership and permission options of a mount (`-o uid=,gid=,umask=`, `--numeric-ids`,
/// `allow_damaged_files`).
#[derive(Clone, Debug)]
pub struct FsOptions {
    /// `-o allow_damaged_files`: open files whose chunks `check --repair` replaced by zeros.
    pub allow_damaged_files: bool,
    /// `-o umask=`: removed from every mode.
    pub umask: u32,
    /// `-o uid=`: owner of everything.
    pub uid_forced: Option<u32>,
    /// `-o gid=`: group of everything.
    pub gid_forced: Option<u32>,
    /// `--numeric-ids`: use the stored ids, not the local ids of the stored names.
    pub numeric_ids: bool,
    /// Owner of items without one (the mounting user).
    pub default_uid: u32,
    /// Group of items without one.
    pub default_gid: u32,
    /// Decrypted chunks kept for partial reads.
    pub data_cache_entries: usize,
}

struct OpenFile {
    chunks: Vec<ChunkListEntry>,
    /// End offset of each chunk in the file.
    ends: Vec<u64>,
}

/// Least recently used decrypted chunks.
struct ChunkCache {
    capacity: usize,
    entries: VecDeque<(ObjectId, Arc<Vec<u8>>)>,
}

impl ChunkCache {
    fn get(&mut self, id: &ObjectId) -> Option<Arc<Vec<u8>>> {
        let pos = self.entries.iter().position(|(k, _)| k == id)?;
        let entry = self.entries.remove(pos)?;
        let data = entry.1.clone();
        self.entries.push_back(entry);
        Some(data)
    }

    fn put(&mut self, id: ObjectId, data: Arc<Vec<u8>>) {
        if self.capacity == 0 {
            return;
        }
        while self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((id, data));
    }
}

struct State {
    tree: Tree,
    repository: Box<dyn Repository + Send>,
    filter: Box<dyn ItemFilter + Send>,
    cache: ChunkCache,
    files: HashMap<u64, OpenFile>,
    next_fh: u64,
    local_ids: HashMap<(bool, Vec<u8>), Option<u32>>,
}

/// The mounted file system.
pub struct BorgFs {
    state: Mutex<State>,
    key: Key,
    manifest: Manifest,
    opts: FsOptions,
}

fn time(ns: Option<i64>, fallback: i64) -> SystemTime {
    let ns = ns.unwrap_or(fallback);
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

fn kind(mode: u32) -> FileType {
    match mode & S_IFMT {
        S_IFDIR => FileType::Directory,
        S_IFLNK => FileType::Symlink,
        S_IFIFO => FileType::NamedPipe,
        S_IFCHR => FileType::CharDevice,
        S_IFBLK => FileType::BlockDevice,
        S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

impl BorgFs {
    /// A file system serving `tree`, reading contents from `repository` with `key`.
    pub fn new(
        tree: Tree,
        repository: Box<dyn Repository + Send>,
        key: Key,
        manifest: Manifest,
        filter: Box<dyn ItemFilter + Send>,
        opts: FsOptions,
    ) -> BorgFs {
        BorgFs {
            state: Mutex::new(State {
                tree,
                repository,
                filter,
                cache: ChunkCache {
                    capacity: opts.data_cache_entries,
                    entries: VecDeque::new(),
                },
                files: HashMap::new(),
                next_fh: 1,
                local_ids: HashMap::new(),
            }),
            key,
            manifest,
            opts,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, Errno> {
        self.state.lock().map_err(|_| Errno::EIO)
    }

    /// Loads the archive behind a placeholder directory on first access.
    fn load(&self, state: &mut State, inode: Inode) -> Result<(), Errno> {
        let State {
            tree,
            repository,
            filter,
            ..
        } = state;
        tree.load_pending(
            inode,
            repository.as_mut(),
            &self.key,
            &self.manifest,
            filter.as_mut(),
        )
        .map_err(|e| {
            eprintln!("fuse: loading an archive failed: {e}");
            Errno::EIO
        })
    }

    /// borg's `get_item_uid_gid`: forced ids, else the local id of the stored name (unless
    /// numeric), else the stored id, else the default.
    fn owner(&self, state: &mut State, item: &Item) -> (u32, u32) {
        let mut lookup = |user: bool, name: &Option<Vec<u8>>| -> Option<u32> {
            if self.opts.numeric_ids {
                return None;
            }
            let name = name.as_deref().filter(|n| !n.is_empty())?;
            *state
                .local_ids
                .entry((user, name.to_vec()))
                .or_insert_with(|| {
                    let text = std::str::from_utf8(name).ok()?;
                    if user {
                        nix::unistd::User::from_name(text)
                            .ok()
                            .flatten()
                            .map(|u| u.uid.as_raw())
                    } else {
                        nix::unistd::Group::from_name(text)
                            .ok()
                            .flatten()
                            .map(|g| g.gid.as_raw())
                    }
                })
        };
        let uid = self.opts.uid_forced.unwrap_or_else(|| {
            lookup(true, &item.user)
                .or_else(|| item.uid.and_then(|u| u32::try_from(u).ok()))
                .unwrap_or(self.opts.default_uid)
        });
        let gid = self.opts.gid_forced.unwrap_or_else(|| {
            lookup(false, &item.group)
                .or_else(|| item.gid.and_then(|g| u32::try_from(g).ok()))
                .unwrap_or(self.opts.default_gid)
        });
        (uid, gid)
    }

    fn attr(&self, state: &mut State, inode: Inode) -> Result<FileAttr, Errno> {
        let node = state.tree.node(inode).ok_or(Errno::ENOENT)?;
        let item = node.item.clone();
        let nlink = node.nlink;
        let (uid, gid) = self.owner(state, &item);
        let mode = item.mode.unwrap_or(S_IFREG | 0o644) & !self.opts.umask;
        let size = item.get_size(false);
        let mtime = item.mtime.unwrap_or(0);
        Ok(FileAttr {
            ino: INodeNo(inode),
            size,
            blocks: size.div_ceil(512),
            atime: time(item.atime, mtime),
            mtime: time(Some(mtime), mtime),
            ctime: time(item.ctime, mtime),
            crtime: time(item.birthtime, mtime),
            kind: kind(mode),
            perm: (mode & 0o7777) as u16,
            nlink,
            uid,
            gid,
            rdev: item.rdev.and_then(|r| u32::try_from(r).ok()).unwrap_or(0),
            blksize: 512,
            flags: 0,
        })
    }

    fn read_at(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let mut state = self.lock()?;
        let state = &mut *state;
        let file = state.files.get(&fh).ok_or(Errno::EBADF)?;
        let mut out = Vec::with_capacity(size as usize);
        let mut pos = offset;
        let end = offset.saturating_add(u64::from(size));
        let mut index = file.ends.partition_point(|&e| e <= pos);
        while pos < end && index < file.chunks.len() {
            let chunk = file.chunks[index];
            let start = file.ends[index] - chunk.size;
            let data = match state.cache.get(&chunk.id) {
                Some(d) => d,
                None => {
                    let d = fetch_object(state.repository.as_mut(), &self.key, &chunk.id).map_err(
                        |e| {
                            eprintln!("fuse: reading a chunk failed: {e}");
                            Errno::EIO
                        },
                    )?;
                    let d = Arc::new(d);
                    state.cache.put(chunk.id, d.clone());
                    d
                }
            };
            let from = usize::try_from(pos - start).map_err(|_| Errno::EIO)?;
            let to = usize::try_from(end.min(file.ends[index]) - start).map_err(|_| Errno::EIO)?;
            let piece = data.get(from..to.min(data.len())).ok_or(Errno::EIO)?;
            out.extend_from_slice(piece);
            pos = start + to as u64;
            index += 1;
        }
        Ok(out)
    }
}

impl Filesystem for BorgFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = (|| {
            let mut state = self.lock()?;
            let parent = parent.0;
            self.load(&mut state, parent)?;
            let name = name.as_bytes();
            let node = state.tree.node(parent).ok_or(Errno::ENOENT)?;
            let inode = match name {
                b"." => parent,
                b".." => node.parent,
                _ => node.child(name).ok_or(Errno::ENOENT)?,
            };
            self.attr(&mut state, inode)
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().and_then(|mut s| self.attr(&mut s, ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let result = self.lock().and_then(|s| {
            let node = s.tree.node(ino.0).ok_or(Errno::ENOENT)?;
            node.item.source.clone().ok_or(Errno::EINVAL)
        });
        match result {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let result = (|| {
            let mut state = self.lock()?;
            let node = state.tree.node(ino.0).ok_or(Errno::ENOENT)?;
            if !self.opts.allow_damaged_files && node.item.chunks_healthy.is_some() {
                eprintln!(
                    "File has damaged (all-zero) chunks. Try running borg check --repair. \
                     Mount with allow_damaged_files to read damaged files."
                );
                return Err(Errno::EIO);
            }
            let chunks = node.item.chunks.clone().unwrap_or_default();
            let mut total = 0u64;
            let ends = chunks
                .iter()
                .map(|c| {
                    total += c.size;
                    total
                })
                .collect();
            let fh = state.next_fh;
            state.next_fh += 1;
            state.files.insert(fh, OpenFile { chunks, ends });
            Ok(fh)
        })();
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_at(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        if let Ok(mut state) = self.lock() {
            state.files.remove(&fh.0);
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let result = self.lock().and_then(|mut s| self.load(&mut s, ino.0));
        match result {
            Ok(()) => reply.opened(FileHandle(ino.0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = (|| {
            let mut state = self.lock()?;
            self.load(&mut state, ino.0)?;
            let node = state.tree.node(ino.0).ok_or(Errno::ENOENT)?;
            let mut entries: Vec<(Vec<u8>, Inode)> =
                vec![(b".".to_vec(), ino.0), (b"..".to_vec(), node.parent)];
            entries.extend(node.entries.iter().cloned());
            let skip = usize::try_from(offset).unwrap_or(usize::MAX);
            let mut listed = Vec::new();
            for (i, (name, inode)) in entries.into_iter().enumerate().skip(skip) {
                let mode = state
                    .tree
                    .node(inode)
                    .and_then(|n| n.item.mode)
                    .unwrap_or(S_IFDIR);
                listed.push((inode, i as u64 + 1, kind(mode), name));
            }
            Ok(listed)
        })();
        match result {
            Ok(listed) => {
                for (inode, next, kind, name) in listed {
                    if reply.add(INodeNo(inode), next, kind, OsStr::from_bytes(&name)) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 512, 255, 512);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let result = self.lock().and_then(|s| {
            let node = s.tree.node(ino.0).ok_or(Errno::ENOENT)?;
            node.item
                .xattrs
                .as_ref()
                .and_then(|x| x.iter().find(|(k, _)| k.as_slice() == name.as_bytes()))
                .map(|(_, v)| v.clone())
                .ok_or(Errno::NO_XATTR)
        });
        match result {
            Ok(value) => xattr_reply(reply, size, &value),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let result = self.lock().and_then(|s| {
            let node = s.tree.node(ino.0).ok_or(Errno::ENOENT)?;
            let mut names = Vec::new();
            for (k, _) in node.item.xattrs.iter().flatten() {
                names.extend_from_slice(k);
                names.push(0);
            }
            Ok(names)
        });
        match result {
            Ok(names) => xattr_reply(reply, size, &names),
            Err(e) => reply.error(e),
        }
    }
}

/// Answers a size query (`size == 0`) or sends `value` if it fits.
fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if len <= size {
        reply.data(value);
    } else {
        reply.error(Errno::ERANGE);
    }
}
