//! Looking ahead of the walker: a second thread opens the regular files and directories of
//! the directory being walked, `fstat`s them, reads their flags, xattrs and ACLs (borg's
//! `stat_simple_attrs`/`stat_ext_attrs` inputs) and lists the directories, while the walker is
//! still busy with the entries before them.
//!
//! An unchanged re-run is all metadata: per file the walker used to make seven system calls
//! (`statx`, `openat`, `fstat`, `FS_IOC_GETFLAGS`, `flistxattr`, the ACL `fgetxattr`,
//! `close`) before the files cache said "unchanged", a dozen per directory, and nothing else
//! was busy. Now most of them run here, and the walker keeps what only it can do in order:
//! the patterns, the files cache, the items and their status lines.
//!
//! Nothing about the archive changes: the walker takes the entries in the same order, and
//! anything the look-ahead could not do cleanly (an error, an entry that is neither a regular
//! file nor a directory, an entry it has not finished when the walker gets there) the walker
//! does itself, as before, reporting errors as borg would. The walker waits for the
//! look-ahead only briefly ([`PENDING_WAIT`]), and the look-ahead keeps [`GAP`] entries clear
//! of the walker, so that each does the share of the entries its speed allows.
//!
//! The look-ahead hands over the open file (at most [`MAX_OPEN_FILES`] held), which the walker
//! reads if the files cache does not know it; beyond that limit a file is opened again,
//! checked to be the same inode (borg's `stat_update_check`). Either way the file's ctime
//! after reading is compared with what was looked up, so a change in between is reported as
//! `C` and not memorized. Listed directories stay open until the walker is done with them, at
//! most [`MAX_LISTINGS`] ahead.
//!
//! The look-ahead sleeps when it has nothing to do; when it ran out of entries it first waits
//! awake for a moment ([`SPIN`]) for the walker's next directory, as long as such waits have
//! been short (an unchanged re-run), not while the walker reads files (a first backup), where
//! spinning would take a core from the workers.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::{DirEntry, File, Metadata};
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::DirEntryExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{open_directory_at, open_noatime_at, CreateOptions, ExtAttrs};
use crate::acl::IdNames;
use crate::walk::normpath_bytes;

/// How many entries of one directory may be looked up ahead of the walker: enough to keep
/// the second thread busy through a burst of slow entries, little memory (a `Metadata` and
/// the attributes each).
const WINDOW: usize = 128;

/// The look-ahead claims no entry closer than this to the walker's next one: the walker does
/// the entries in between itself rather than wait for them. Waiting and waking cost a few
/// microseconds each, as much as looking up an entry; with the gap the two threads share
/// the entries of a directory without waiting for each other, whichever is faster doing more.
const GAP: usize = 2;

/// A directory entry as the walker lists it (borg's `scandir_inorder`).
pub(super) struct Entry {
    /// The entry's name in its directory.
    pub name: Vec<u8>,
    /// Its path as archived (the directory's path joined with `name`, normalized).
    pub path: Vec<u8>,
    /// Its `readdir` entry, when the directory is open for relative lookups.
    pub dir_entry: Option<DirEntry>,
}

/// What the look-ahead learned about a regular file or a directory.
pub(super) struct Looked {
    /// `fstat` of the entry, opened without following symlinks.
    pub md: Metadata,
    /// Its flags, xattrs and ACLs, read through the open entry.
    pub attrs: ExtAttrs,
    /// A directory's entries, listed for the walker (up to [`MAX_LISTINGS`] at a time).
    pub listing: Option<Listing>,
    /// The regular file, open, for the walker to read should the files cache not know it (up
    /// to [`MAX_OPEN_FILES`] at a time).
    pub file: Option<File>,
    /// Counts `file` (see [`MAX_OPEN_FILES`]).
    _open: Option<Counted>,
}

/// How many open files the look-ahead may hold for the walker at a time; beyond that it closes
/// them, and the walker opens again those it reads.
const MAX_OPEN_FILES: usize = 64;

/// How many directories the look-ahead may have listed for the walker at a time; each holds
/// two descriptors (its listing's and the one for relative lookups) until the walker is done
/// with it.
const MAX_LISTINGS: usize = 16;

/// A directory's entries in borg's order, and the directory open for relative lookups.
pub(super) struct Listing {
    pub dir: Option<Arc<File>>,
    pub entries: Arc<Vec<Entry>>,
    /// Counts the listings the look-ahead made (see [`MAX_LISTINGS`]).
    _made: Option<Counted>,
}

/// One of at most so many things the look-ahead holds for the walker (listings, open files),
/// counted while it exists.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    /// One more of `count`, unless there are `max` already.
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Counted> {
        let counted = Counted(Arc::clone(count));
        (count.fetch_add(1, Ordering::Relaxed) < max).then_some(counted)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Listing {
    /// Lists directory `path` (at `fs_path`) sorted by inode number (borg's
    /// `scandir_inorder`); `dir` is the directory opened for relative lookups, if it is.
    pub(super) fn read(path: &[u8], fs_path: &Path, dir: Option<File>) -> std::io::Result<Listing> {
        let listing = std::fs::read_dir(fs_path)?;
        let dir = dir.map(Arc::new);
        let mut list: Vec<(u64, Entry)> = Vec::new();
        for entry in listing {
            let e = entry?;
            let name = e.file_name().into_vec();
            let mut child = path.to_vec();
            if child != b"/" {
                child.push(b'/');
            }
            child.extend_from_slice(&name);
            let ino = e.ino();
            list.push((
                ino,
                Entry {
                    path: normpath_bytes(&child),
                    name,
                    dir_entry: dir.is_some().then_some(e),
                },
            ));
        }
        list.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
        Ok(Listing {
            dir,
            entries: Arc::new(list.into_iter().map(|(_, e)| e).collect()),
            _made: None,
        })
    }
}

/// One directory the walker is in, with the results waiting for it.
struct Ahead {
    /// Tells directories apart after the walker left one and entered another.
    id: u64,
    dir: Arc<File>,
    entries: Arc<Vec<Entry>>,
    /// The index of the walker's next entry.
    base: usize,
    /// The device a `--one-file-system` walk stays on: directories elsewhere are not listed
    /// (the walker does not descend into them, and a hung network file system must not hang
    /// the look-ahead).
    restrict_dev: Option<u64>,
    /// What the look-ahead found about entries `base..base + slots.len()`.
    slots: VecDeque<Slot>,
}

impl Ahead {
    /// The entry the look-ahead claims next in this directory, if any: [`GAP`] entries clear
    /// of the walker or after the last one claimed, within the [`WINDOW`].
    fn next_claim(&self) -> Option<usize> {
        let k = self.slots.len().max(GAP);
        let index = self.base + k;
        (k < WINDOW && index < self.entries.len()).then_some(index)
    }

    /// Whether there is room for a good stretch of the look-ahead's work: the walker wakes a
    /// sleeping look-ahead then, not for every entry it takes.
    fn roomy(&self) -> bool {
        self.slots.len() <= WINDOW / 2
    }
}

#[derive(Default)]
struct State {
    /// The directories the walker is in, the deepest last.
    dirs: Vec<Ahead>,
    next_id: u64,
    closed: bool,
    /// The look-ahead waits for work or room.
    looker_waits: bool,
}

/// The two threads' meeting point (see the module documentation).
#[derive(Default)]
pub(super) struct Lookahead {
    state: Mutex<State>,
    /// How many listings the look-ahead made that still exist.
    listings: Arc<AtomicUsize>,
    /// How many files the look-ahead holds open for the walker.
    open_files: Arc<AtomicUsize>,
    /// The look-ahead waits here for work or room.
    room: Condvar,
    /// Counts the directories the walker entered (under the lock): the look-ahead, out of
    /// entries, watches it for a moment before it sleeps.
    entered: AtomicU64,
}

/// What the look-ahead found about an entry.
enum Slot {
    /// The walker looks itself: the look-ahead skipped the entry (see [`GAP`]) or could not
    /// look it up.
    Left,
    /// The look-ahead is at it.
    Pending,
    Ready(Box<Looked>),
}

/// How long the walker waits for an entry the look-ahead is at before it looks itself: about
/// what an entry takes, for the look-ahead is usually nearly done.
const PENDING_WAIT: Duration = Duration::from_micros(20);

/// How long the look-ahead, out of entries, waits awake for the walker's next directory.
const SPIN: Duration = Duration::from_micros(50);

impl Lookahead {
    fn lock(&self) -> MutexGuard<'_, State> {
        // a panic on the other thread poisons the lock; its data stays consistent (every
        // change is a single assignment or push), so carry on
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The walker enters a directory whose `entries` it will walk in order.
    /// `restrict_dev`: the device a `--one-file-system` walk stays on.
    pub(super) fn enter(
        &self,
        dir: Arc<File>,
        entries: Arc<Vec<Entry>>,
        restrict_dev: Option<u64>,
    ) {
        let mut s = self.lock();
        let id = s.next_id;
        s.next_id += 1;
        s.dirs.push(Ahead {
            id,
            dir,
            entries,
            base: 0,
            slots: VecDeque::new(),
            restrict_dev,
        });
        self.entered.fetch_add(1, Ordering::Release);
        if s.looker_waits {
            self.room.notify_one();
        }
    }

    /// The walker is done with the directory it entered last.
    pub(super) fn leave(&self) {
        self.lock().dirs.pop();
    }

    /// The walker's next entry in the directory it entered last: what the look-ahead found,
    /// or `None` when the walker is to look itself. The walker does not wait long: an entry
    /// the look-ahead has not finished within [`PENDING_WAIT`] it looks up itself (the
    /// look-ahead's answer, when it comes, finds its slot gone).
    pub(super) fn next(&self) -> Option<Box<Looked>> {
        let mut s = self.lock();
        let mut waiting: Option<Instant> = None;
        while matches!(s.dirs.last()?.slots.front(), Some(Slot::Pending))
            && waiting.get_or_insert_with(Instant::now).elapsed() < PENDING_WAIT
        {
            drop(s);
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            s = self.lock();
        }
        let ahead = s.dirs.last_mut()?;
        ahead.base += 1;
        let looked = match ahead.slots.pop_front() {
            Some(Slot::Ready(looked)) => Some(looked),
            _ => None,
        };
        let roomy = ahead.roomy();
        if s.looker_waits && roomy {
            self.room.notify_one();
        }
        looked
    }

    /// Ends [`Lookahead::run`].
    pub(super) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.dirs.clear();
        self.room.notify_one();
    }

    /// The look-ahead thread: works on the deepest directory with entries left and room,
    /// until [`Lookahead::close`].
    pub(super) fn run(&self, opts: &CreateOptions) {
        lowest_priority();
        let mut names = IdNames::default();
        // whether the last spell without work was short enough to wait for awake
        let mut spin = true;
        let mut s = self.lock();
        loop {
            if s.closed {
                return;
            }
            let claim = s.dirs.iter_mut().rev().find_map(|a| {
                let index = a.next_claim()?;
                a.slots.resize_with(index - a.base, || Slot::Left);
                a.slots.push_back(Slot::Pending);
                let claim = (a.id, Arc::clone(&a.dir), Arc::clone(&a.entries));
                Some((claim, index, a.restrict_dev))
            });
            let Some(((id, dir, entries), index, restrict_dev)) = claim else {
                let idle = Instant::now();
                // with entries left but no room, sleep until the walker has taken half a
                // window; with none left, the walker is about to enter a directory
                let entries_left = s
                    .dirs
                    .iter()
                    .any(|a| a.base + a.slots.len() < a.entries.len());
                if spin && !entries_left {
                    // the walker enters its next directory or makes room within
                    // microseconds, sooner than a sleeping thread wakes up: wait for that a
                    // little awake
                    let seen = self.entered.load(Ordering::Acquire);
                    drop(s);
                    while self.entered.load(Ordering::Acquire) == seen && idle.elapsed() < SPIN {
                        std::hint::spin_loop();
                    }
                    s = self.lock();
                    if s.closed || self.entered.load(Ordering::Acquire) != seen {
                        continue;
                    }
                }
                s.looker_waits = true;
                s = self.room.wait(s).unwrap_or_else(|e| e.into_inner());
                s.looker_waits = false;
                // spinning pays while the walker comes back quickly (metadata only); while
                // it reads files (a first backup) it only takes a core from the workers
                spin = idle.elapsed() < SPIN;
                continue;
            };
            drop(s);
            let looked = self
                .look(opts, &dir, &entries[index], restrict_dev, &mut names)
                .map(Box::new);
            drop((dir, entries));
            s = self.lock();
            // unless the walker left the directory or got to the entry first
            if let Some(a) = s.dirs.iter_mut().rev().find(|a| a.id == id) {
                if let Some(slot) = index.checked_sub(a.base).and_then(|k| a.slots.get_mut(k)) {
                    *slot = looked.map_or(Slot::Left, Slot::Ready);
                }
            }
        }
    }
}

/// Gives the calling thread (the look-ahead) the lowest scheduling priority, nice 19.
///
/// Its work is speculative: whatever it has not done, the walker does. At the walker's
/// priority, every wake-up of the look-ahead preempted the walker or a worker on a busy
/// machine: a first backup of the 1 GiB benchmark dataset switched threads 25,000 times,
/// half of them between the walker and the look-ahead. At nice 19 it runs when a core is
/// free (an unchanged re-run, where it pays, leaves one free) and yields otherwise: 13,500
/// switches, 7% less CPU, first backup ~6% faster (docs/performance.md, "The look-ahead's
/// priority"). On Linux `setpriority(PRIO_PROCESS, 0)` sets the calling thread's nice value
/// only; elsewhere it would lower the whole process, so it is left alone there.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        // failing leaves the thread at the walker's priority, as before: nothing to report
        let _ = rustix::process::setpriority_process(None, 19);
    }
}

/// Closes the look-ahead when the walker's thread ends, however it ends.
pub(super) struct CloseOnDrop<'a>(pub &'a Lookahead);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Lookahead {
    /// Looks up one entry: a regular file or a directory (as `readdir` says) that the
    /// patterns include; anything else, or any error, is left to the walker.
    fn look(
        &self,
        opts: &CreateOptions,
        dir: &File,
        entry: &Entry,
        restrict_dev: Option<u64>,
        names: &mut IdNames,
    ) -> Option<Looked> {
        let file_type = entry.dir_entry.as_ref()?.file_type().ok()?;
        if !(file_type.is_file() || file_type.is_dir())
            || !opts.patterns.decide(&entry.path).included
        {
            return None;
        }
        let name = OsStr::from_bytes(&entry.name);
        // non-blocking: should the entry have become a FIFO since it was listed, opening it
        // must not wait for a writer (the walker then finds it is not a regular file)
        let file = if file_type.is_file() {
            open_noatime_at(dir.as_fd(), name, false, true)
        } else {
            open_directory_at(dir.as_fd(), name)
        }
        .ok()?;
        let md = file.metadata().ok()?;
        if md.file_type() != file_type {
            return None;
        }
        let attrs = ExtAttrs::read(opts, &entry.path, md.mode(), Some(&file), names);
        let mut looked = Looked {
            md,
            attrs,
            listing: None,
            file: None,
            _open: None,
        };
        if looked.md.is_dir() {
            if restrict_dev.is_none_or(|d| d == looked.md.dev()) {
                looked.listing = self.list(&entry.path, file);
            }
        } else if let Some(open) = Counted::take(&self.open_files, MAX_OPEN_FILES) {
            looked.file = Some(file);
            looked._open = Some(open);
        }
        Some(looked)
    }

    /// Lists directory `path`, opened as `dir`, unless [`MAX_LISTINGS`] are waiting already.
    fn list(&self, path: &[u8], dir: File) -> Option<Listing> {
        let made = Counted::take(&self.listings, MAX_LISTINGS)?;
        let listing = Listing::read(path, Path::new(OsStr::from_bytes(path)), Some(dir)).ok()?;
        Some(Listing {
            _made: Some(made),
            ..listing
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Waits until the look-ahead sleeps as it should: nothing pending, and in each of the
    /// walker's directories nothing left to claim or the window more than half full (the
    /// walker wakes it at half). `looker_waits` alone is not enough: a woken look-ahead keeps
    /// it set until its thread runs again, which a loaded machine delays for milliseconds.
    /// Without the walker's wake-up this never holds after the window's first half is taken.
    fn settle(lookahead: &Lookahead) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let s = lookahead.lock();
            let settled = s.looker_waits
                && s.dirs.iter().all(|a| {
                    (a.next_claim().is_none() || !a.roomy())
                        && !a.slots.iter().any(|s| matches!(s, Slot::Pending))
                });
            drop(s);
            if settled {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the look-ahead did not settle");
    }

    /// The look-ahead's thread, and only it, runs at nice 19.
    #[cfg(target_os = "linux")]
    #[test]
    fn only_the_lookahead_thread_is_lowered() {
        let before = rustix::process::getpriority_process(None).unwrap();
        let lowered = std::thread::spawn(|| {
            lowest_priority();
            rustix::process::getpriority_process(None).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, 19);
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), before);
    }

    /// The walker's side, as `walk_children` uses it: every answer belongs to the entry the
    /// walker is at (the same inode, the same attributes), whichever entries the look-ahead
    /// reached, also with a subdirectory entered and left in between.
    #[test]
    fn answers_belong_to_the_walkers_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("d");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        for i in 0..300 {
            std::fs::write(root.join(format!("f{i}")), vec![b'x'; i]).unwrap();
        }
        for i in 0..5 {
            std::fs::write(root.join(format!("sub/g{i}")), b"g").unwrap();
        }
        let opts = CreateOptions::default();
        let lookahead = Lookahead::default();
        let path = root.as_os_str().as_bytes();
        let dir = crate::create::open_directory(&root).unwrap();
        let listing = Listing::read(path, &root, Some(dir)).unwrap();
        let looked_up = std::thread::scope(|scope| {
            scope.spawn(|| lookahead.run(&opts));
            let _close = CloseOnDrop(&lookahead);
            let dir = listing.dir.clone().unwrap();
            lookahead.enter(dir, Arc::clone(&listing.entries), None);
            let mut looked_up = 0;
            for (i, entry) in listing.entries.iter().enumerate() {
                // let the look-ahead fill its window now and then
                if i % 50 == 0 {
                    settle(&lookahead);
                }
                let Some(looked) = lookahead.next() else {
                    continue;
                };
                looked_up += 1;
                let md = std::fs::symlink_metadata(OsStr::from_bytes(&entry.path)).unwrap();
                assert_eq!(looked.md.ino(), md.ino(), "{:?}", entry.path);
                assert_eq!(looked.md.size(), md.size());
                if md.is_dir() {
                    // the walker enters the listed subdirectory and leaves it again
                    let sub = looked.listing.expect("a listed subdirectory");
                    assert_eq!(sub.entries.len(), 5);
                    lookahead.enter(sub.dir.clone().unwrap(), Arc::clone(&sub.entries), None);
                    for sub_entry in sub.entries.iter() {
                        if let Some(l) = lookahead.next() {
                            let want = std::fs::metadata(OsStr::from_bytes(&sub_entry.path));
                            assert_eq!(l.md.ino(), want.unwrap().ino());
                        }
                    }
                    lookahead.leave();
                } else {
                    // the handed-over file is the entry itself
                    if let Some(file) = &looked.file {
                        assert_eq!(file.metadata().unwrap().ino(), md.ino());
                    }
                }
            }
            lookahead.leave();
            looked_up
        });
        // the walker takes 50 entries between pauses, fewer than half a window, and the
        // look-ahead only adds to the window's far end in between: every entry but the gap's
        // at the start was ready
        assert_eq!(looked_up, 301 - GAP, "looked up {looked_up} of 301");
        assert_eq!(lookahead.listings.load(Ordering::Relaxed), 0);
        assert_eq!(lookahead.open_files.load(Ordering::Relaxed), 0);
    }
}
