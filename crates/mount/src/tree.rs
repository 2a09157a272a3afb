//! The inode tree a mount serves, built from archive items as borg 1.2's `FuseBackend`
//! (`fuse.py`) builds it: one directory per archive (loaded on first access) or one archive's
//! tree, intermediate directories made up where an archive lacks them, hard links sharing one
//! inode with a link count, and the versions view that merges all archives and turns each file
//! into a directory of its distinct contents (`name.00001.ext`, ...).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use rborg_archive::item::{hardlinkable, strip_components, stripped_away, Item, S_IFDIR, S_IFMT};
use rborg_archive::{ArchiveMeta, ChunkListEntry, ItemIter, Manifest, ReadError};
use rborg_crypto::Key;
use rborg_repository::Repository;

/// An inode number; the root is [`ROOT`].
pub type Inode = u64;

/// The root directory's inode.
pub const ROOT: Inode = 1;

/// Decides which items a mount shows (borg's `build_filter`: the patterns and paths, and
/// `--strip-components`), and reports what it skipped.
pub trait ItemFilter {
    /// Whether the item at `path` (as stored, before stripping) is shown.
    fn matches(&mut self, path: &[u8]) -> bool;
}

impl<F: FnMut(&[u8]) -> bool> ItemFilter for F {
    fn matches(&mut self, path: &[u8]) -> bool {
        self(path)
    }
}

/// One file system object.
#[derive(Debug)]
pub struct Node {
    /// Metadata as stored in the archive (its path is dropped to save memory), or the
    /// made-up directory's.
    pub item: Item,
    /// Parent directory (the root is its own parent).
    pub parent: Inode,
    /// Link count: 1, plus one per hard link to this inode.
    pub nlink: u32,
    /// Directory entries in the order they were added (borg lists them in that order).
    pub entries: Vec<(Vec<u8>, Inode)>,
    index: HashMap<Vec<u8>, Inode>,
}

impl Node {
    fn new(item: Item, parent: Inode) -> Node {
        Node {
            item,
            parent,
            nlink: 1,
            entries: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The directory entry `name`, if any.
    pub fn child(&self, name: &[u8]) -> Option<Inode> {
        self.index.get(name).copied()
    }
}

/// Hard link masters that are not shown, by path: their chunks (until a shown link takes them)
/// and the path under which a link took them (borg's `hardlink_masters`).
type Masters = HashMap<Vec<u8>, (Option<Vec<ChunkListEntry>>, Option<Vec<u8>>)>;

/// What a mount shows, decided before any archive is read.
#[derive(Clone, Debug, Default)]
pub struct TreeOptions {
    /// `-o versions`: merge all archives, one directory of versions per file.
    pub versions: bool,
    /// `--strip-components N`.
    pub strip_components: usize,
    /// `--consider-part-files`: show checkpoint part files.
    pub consider_part_files: bool,
    /// Paths or patterns narrow the view (borg's `partial_extract`): hard link masters that
    /// are not shown lend their chunks to the first link that is.
    pub filtered: bool,
}

/// The whole tree: nodes by inode, archives not loaded yet, and the versions index.
pub struct Tree {
    nodes: Vec<Node>,
    pending: HashMap<Inode, String>,
    default_dir: Item,
    opts: TreeOptions,
    /// Versions view: path -> (latest version number, hash of its chunk IDs).
    versions_index: HashMap<Vec<u8>, (u32, u64)>,
}

/// `os.path.splitext` on a path's last component: (stem, extension with its dot).
fn split_ext(name: &[u8]) -> (&[u8], &[u8]) {
    let base_start = name.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let base = &name[base_start..];
    let leading_dots = base.iter().take_while(|&&b| b == b'.').count();
    match base.iter().rposition(|&b| b == b'.') {
        Some(i) if i >= leading_dots => name.split_at(base_start + i),
        _ => (name, &[]),
    }
}

/// borg's `make_versioned_name`: `a/b.txt` version 3 -> `a/b.00003.txt`; with `add_dir`
/// the name first gets a directory of its own (`a/b.txt/b.txt`).
fn versioned_name(name: &[u8], version: u32, add_dir: bool) -> Vec<u8> {
    let mut name = name.to_vec();
    if add_dir {
        let last = name
            .rsplit(|&b| b == b'/')
            .next()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        name.push(b'/');
        name.extend_from_slice(&last);
    }
    let (stem, ext) = split_ext(&name);
    let mut out = stem.to_vec();
    out.extend_from_slice(format!(".{version:05}").as_bytes());
    out.extend_from_slice(ext);
    out
}

fn chunks_hash(chunks: &[ChunkListEntry]) -> u64 {
    let mut h = DefaultHasher::new();
    for c in chunks {
        c.id.hash(&mut h);
    }
    h.finish()
}

impl Tree {
    /// An empty tree whose made-up directories copy `default_dir` (mode, owner, mtime).
    pub fn new(default_dir: Item, opts: TreeOptions) -> Tree {
        let mut root = Node::new(default_dir.clone(), ROOT);
        root.item.path.clear();
        Tree {
            nodes: vec![root],
            pending: HashMap::new(),
            default_dir,
            opts,
            versions_index: HashMap::new(),
        }
    }

    /// The node of `inode`.
    pub fn node(&self, inode: Inode) -> Option<&Node> {
        let i = usize::try_from(inode).ok()?.checked_sub(1)?;
        self.nodes.get(i)
    }

    fn node_mut(&mut self, inode: Inode) -> &mut Node {
        &mut self.nodes[(inode - 1) as usize]
    }

    fn add_node(&mut self, item: Item, parent: Inode) -> Inode {
        self.nodes.push(Node::new(item, parent));
        self.nodes.len() as Inode
    }

    fn add_entry(&mut self, parent: Inode, name: Vec<u8>, inode: Inode) {
        let dir = self.node_mut(parent);
        if dir.index.insert(name.clone(), inode).is_none() {
            dir.entries.push((name, inode));
        } else if let Some(e) = dir.entries.iter_mut().find(|e| e.0 == name) {
            e.1 = inode;
        }
    }

    /// A made-up directory (`_create_dir`), optionally with its own mtime.
    fn make_dir(&mut self, parent: Inode, mtime: Option<i64>) -> Inode {
        let mut item = self.default_dir.clone();
        if let Some(t) = mtime {
            item.mtime = Some(t);
        }
        self.add_node(item, parent)
    }

    /// The inode at `prefix/path` (`find_inode`).
    fn find(&self, prefix: &[Vec<u8>], path: &[u8]) -> Option<Inode> {
        let mut inode = ROOT;
        for segment in prefix
            .iter()
            .map(Vec::as_slice)
            .chain(path.split(|&b| b == b'/'))
        {
            inode = self.node(inode)?.child(segment)?;
        }
        Some(inode)
    }

    /// The directory `name` in `parent`, made up if missing (`_process_inner`).
    fn inner(&mut self, name: &[u8], parent: Inode) -> Inode {
        if let Some(inode) = self.node(parent).and_then(|n| n.child(name)) {
            return inode;
        }
        let inode = self.make_dir(parent, None);
        if !name.is_empty() {
            self.add_entry(parent, name.to_vec(), inode);
        }
        inode
    }

    /// Adds a placeholder directory for each archive, loaded by [`Tree::load_pending`] on
    /// first access; in the versions view every archive is processed now, merged at the root.
    pub fn add_archives(
        &mut self,
        archives: &[(String, i64)],
        repository: &mut dyn Repository,
        key: &Key,
        manifest: &Manifest,
        filter: &mut dyn ItemFilter,
    ) -> Result<(), ReadError> {
        for (name, time_ns) in archives {
            if self.opts.versions {
                self.process_archive(name, &[], repository, key, manifest, filter)?;
            } else {
                let inode = self.make_dir(ROOT, Some(*time_ns));
                self.add_entry(ROOT, name.as_bytes().to_vec(), inode);
                self.pending.insert(inode, name.clone());
            }
        }
        Ok(())
    }

    /// Loads the archive behind a placeholder directory, if `inode` is one.
    pub fn load_pending(
        &mut self,
        inode: Inode,
        repository: &mut dyn Repository,
        key: &Key,
        manifest: &Manifest,
        filter: &mut dyn ItemFilter,
    ) -> Result<(), ReadError> {
        if let Some(name) = self.pending.remove(&inode) {
            let prefix = vec![name.as_bytes().to_vec()];
            self.process_archive(&name, &prefix, repository, key, manifest, filter)?;
        }
        Ok(())
    }

    /// Adds the items of archive `name` under `prefix` (`_process_archive`).
    pub fn process_archive(
        &mut self,
        name: &str,
        prefix: &[Vec<u8>],
        repository: &mut dyn Repository,
        key: &Key,
        manifest: &Manifest,
        filter: &mut dyn ItemFilter,
    ) -> Result<(), ReadError> {
        let meta = ArchiveMeta::load_by_name(repository, key, manifest, name, false)?;
        let strip_n = self.opts.strip_components;
        let mut file_versions: HashMap<Vec<u8>, u32> = HashMap::new();
        // masters of hard links whose master is not shown: path -> (chunks, shown path)
        let mut masters = Masters::new();
        let partial = self.opts.filtered || strip_n > 0;
        for item in ItemIter::new(repository, key, meta.items.clone()) {
            let mut item = item?;
            if item.part.is_some() && !self.opts.consider_part_files {
                continue;
            }
            let mode = item.mode.unwrap_or(0);
            let matched = filter.matches(&item.path) && !stripped_away(&item.path, strip_n);
            if partial
                && !matched
                && hardlinkable(mode)
                && item.hardlink_master.unwrap_or(true)
                && item.source.is_none()
            {
                masters.insert(item.path.clone(), (item.chunks.clone(), None));
            }
            if !matched {
                continue;
            }
            if strip_n > 0 {
                item.path = strip_components(&item.path, strip_n);
            }
            let path = item.path.clone();
            let is_dir = mode & S_IFMT == S_IFDIR;
            if is_dir {
                if let Some(inode) = self.find(prefix, &path) {
                    // `borg create ... dir/file dir` made the directory up before its item came
                    item.path.clear();
                    self.node_mut(inode).item = item;
                    continue;
                }
            }
            let mut segments: Vec<Vec<u8>> = prefix.to_vec();
            segments.extend(path.split(|&b| b == b'/').map(<[u8]>::to_vec));
            let leaf = segments.pop().unwrap_or_default();
            let mut parent = ROOT;
            for segment in &segments {
                parent = self.inner(segment, parent);
            }
            self.process_leaf(
                leaf,
                item,
                parent,
                prefix,
                is_dir,
                &mut masters,
                &mut file_versions,
            );
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn process_leaf(
        &mut self,
        mut name: Vec<u8>,
        mut item: Item,
        mut parent: Inode,
        prefix: &[Vec<u8>],
        is_dir: bool,
        masters: &mut Masters,
        file_versions: &mut HashMap<Vec<u8>, u32>,
    ) {
        let path = std::mem::take(&mut item.path);
        let mode = item.mode.unwrap_or(0);
        let inode = match item.source.clone() {
            Some(source) if hardlinkable(mode) => {
                let stripped = strip_components(&source, self.opts.strip_components);
                let (chunks, link_target) = masters
                    .get(&source)
                    .cloned()
                    .unwrap_or((None, Some(stripped)));
                if let Some(mut target) = link_target {
                    if self.opts.versions {
                        let version = file_versions.get(&target).copied().unwrap_or(1);
                        target = versioned_name(&target, version, true);
                    }
                    let Some(inode) = self.find(prefix, &target) else {
                        // borg logs "Skipping broken hard link" and goes on
                        return;
                    };
                    self.node_mut(inode).nlink += 1;
                    inode
                } else {
                    item.chunks = chunks;
                    if !masters.is_empty() {
                        masters.insert(source, (None, Some(path.clone())));
                    }
                    self.add_node(item, parent)
                }
            }
            _ => self.add_node(item, parent),
        };
        if self.opts.versions && !is_dir {
            parent = self.inner(&name, parent);
            let chunks = self.node(inode).and_then(|n| n.item.chunks.clone());
            if let Some(chunks) = chunks {
                let contents = chunks_hash(&chunks);
                let entry = self.versions_index.entry(path.clone()).or_insert((0, 0));
                if entry.0 == 0 || entry.1 != contents {
                    *entry = (entry.0 + 1, contents);
                }
                let version = entry.0;
                name = versioned_name(&name, version, false);
                file_versions.insert(path, version);
            }
        }
        self.node_mut(inode).parent = parent;
        if !name.is_empty() {
            self.add_entry(parent, name, inode);
        }
    }

    /// Number of inodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree has only its root.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_names_keep_the_extension_last() {
        assert_eq!(versioned_name(b"a/b.txt", 3, false), b"a/b.00003.txt");
        assert_eq!(versioned_name(b"test", 1, false), b"test.00001");
        assert_eq!(versioned_name(b".bashrc", 2, false), b".bashrc.00002");
        assert_eq!(versioned_name(b"x.tar.gz", 12, false), b"x.tar.00012.gz");
        assert_eq!(
            versioned_name(b"input/hardlink1", 1, true),
            b"input/hardlink1/hardlink1.00001"
        );
        assert_eq!(versioned_name(b"d.d/f", 1, false), b"d.d/f.00001");
    }

    #[test]
    fn inner_directories_are_made_up_once() {
        let mut tree = Tree::new(Item::new(b"".to_vec(), 0o40755), TreeOptions::default());
        let a = tree.inner(b"a", ROOT);
        assert_eq!(tree.inner(b"a", ROOT), a);
        let b = tree.inner(b"b", a);
        assert_eq!(tree.find(&[], b"a/b"), Some(b));
        assert_eq!(tree.node(ROOT).unwrap().entries.len(), 1);
        assert!(tree.node(0).is_none());
        assert!(tree.node(99).is_none());
    }
}
