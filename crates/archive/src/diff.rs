//! Comparing two archives item by item (borg 1.2.4 `archiver.py` `do_diff`, `archive.py`
//! `Archive.compare_archives_iter`, `item.pyx` `ItemDiff` / `chunks_contents_equal`).
//!
//! Both item streams are walked in step (borg's `zip_longest`); an item whose partner has not
//! shown up yet waits as an orphan, and orphans left at the end are "added" (only in the second
//! archive) or "removed" (only in the first). Hard link slaves are compared through their
//! masters (the items carrying the chunks); a pair whose master was not seen yet is deferred
//! to the end, as borg does.
//!
//! Content is compared by chunk IDs when both archives were chunked with the same parameters
//! (`can_compare_chunk_ids`), else by reading and comparing the plaintext. Like borg 1.2.4,
//! a changed file then shows `modified` without sizes, and a file whose content is unchanged
//! but whose metadata changed shows `+0 B -0 B` (`0 B 0 B`) with chunk IDs.
//!
//! [`ItemDiff::text`] and [`ItemDiff::json_line`] render one result exactly as borg prints
//! it (`print_text_output` / `print_json_output`).

use std::collections::{BTreeMap, HashMap, HashSet};

use rborg_crypto::{msgpack, Key};
use rborg_repository::{ObjectId, Repository};
use rmpv::Value;

use crate::archive::{fetch_object, open_object, ArchiveMeta, ReadError, ReadResult, PREFETCH};
use crate::format;
use crate::item::{hardlinkable, Item, ItemUnpacker, S_IFBLK, S_IFCHR, S_IFIFO};
use crate::patterns::PatternMatcher;

/// Walks an archive's item stream without holding the repository, so that two streams (or a
/// stream and file contents) can be read from one repository in turn. Fetches `PREFETCH`
/// item chunks at a time, like [`crate::ItemIter`].
pub struct ItemCursor {
    ids: Vec<ObjectId>,
    next: usize,
    unpacker: ItemUnpacker,
    done: bool,
}

impl ItemCursor {
    /// A cursor over the items of `meta`.
    pub fn new(meta: &ArchiveMeta) -> ItemCursor {
        ItemCursor {
            ids: meta.items.clone(),
            next: 0,
            unpacker: ItemUnpacker::new(),
            done: false,
        }
    }

    /// The next item, `None` at the end of the stream.
    pub fn next_item(
        &mut self,
        repository: &mut dyn Repository,
        key: &Key,
    ) -> ReadResult<Option<Item>> {
        if self.done {
            return Ok(None);
        }
        loop {
            if let Some(item) = self.unpacker.next_item()? {
                return Ok(Some(item));
            }
            if self.next >= self.ids.len() {
                self.done = true;
                self.unpacker.finish()?;
                return Ok(None);
            }
            let end = (self.next + PREFETCH).min(self.ids.len());
            let batch = &self.ids[self.next..end];
            let cdatas = repository.get_many(batch)?;
            for (id, cdata) in batch.iter().zip(cdatas) {
                self.unpacker.feed(&open_object(key, id, &cdata)?);
            }
            self.next = end;
        }
    }
}

/// borg's `normalize_chunker_params`: parameters of borg < 1.2 (4 integers) are buzhash
/// parameters. Text and binary strings compare equal.
fn normalize_chunker_params(cp: &Value) -> Option<Vec<Value>> {
    let mut list: Vec<Value> = cp
        .as_array()?
        .iter()
        .map(|v| match msgpack::as_raw(v) {
            Some(b) => Value::Binary(b.to_vec()),
            None => v.clone(),
        })
        .collect();
    if list.len() == 4 && list[0].is_u64() {
        list.insert(0, Value::Binary(b"buzhash".to_vec()));
    }
    Some(list)
}

/// Whether contents of `a` and `b` can be compared by chunk IDs: both archives name their
/// chunker parameters and they are the same (borg's `do_diff`). `None` when at least one
/// archive does not say (archives of borg < 1.1).
pub fn same_chunker_params(a: &ArchiveMeta, b: &ArchiveMeta) -> Option<bool> {
    let (Some(cp1), Some(cp2)) = (&a.chunker_params, &b.chunker_params) else {
        return None;
    };
    Some(normalize_chunker_params(cp1) == normalize_chunker_params(cp2))
}

/// Options of the comparison.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions {
    /// Compare contents by chunk IDs (same chunker parameters) instead of by reading them.
    pub can_compare_chunk_ids: bool,
    /// `--content-only`: ignore owner, mode and time changes.
    pub content_only: bool,
    /// Compare owners by uid/gid instead of user/group names. borg 1.2.4's
    /// `compare_archives_iter` never passes `--numeric-ids` on, so its CLI always compares names.
    pub numeric_ids: bool,
    /// `--consider-part-files`: include checkpoint part files.
    pub consider_part_files: bool,
}

/// An owner as `ItemDiff._owner_diff` shows it: a name, a numeric ID or nothing (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Not stored.
    None,
    /// User or group name (raw bytes of borg's surrogate-escaped str).
    Name(Vec<u8>),
    /// uid or gid.
    Id(u64),
}

impl Owner {
    fn text(&self) -> String {
        match self {
            Owner::None => "None".into(),
            Owner::Name(n) => format::remove_surrogates(n),
            Owner::Id(i) => i.to_string(),
        }
    }

    fn json(&self) -> String {
        match self {
            Owner::None => "null".into(),
            Owner::Name(n) => json_surrogate_str(n),
            Owner::Id(i) => i.to_string(),
        }
    }
}

/// One change of an item, as `ItemDiff` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An item of this kind (`directory`, `link`, `blkdev`, `chrdev`, `fifo`) appeared.
    Added(&'static str),
    /// An item of this kind disappeared.
    Removed(&'static str),
    /// A symlink points elsewhere.
    ChangedLink,
    /// A file appeared, with its size.
    AddedFile(u64),
    /// A file disappeared, with its size.
    RemovedFile(u64),
    /// File content differs (or, without chunk ID comparison, may differ): with chunk IDs, the
    /// sizes of the chunks only in the new and only in the old version.
    Modified(Option<(u64, u64)>),
    /// Owner changed: old user, old group, new user, new group.
    Owner(Owner, Owner, Owner, Owner),
    /// Mode changed (`stat.filemode` strings).
    Mode(String, String),
    /// `ctime` or `mtime` changed: attribute name, old and new time in ns.
    Time(&'static str, i64, i64),
}

fn local_time(ns: i64) -> Option<chrono::NaiveDateTime> {
    format::ns_to_local(ns)
}

impl Change {
    /// The text borg prints for this change.
    pub fn text(&self) -> String {
        match self {
            Change::Added(kind) => format!("added {kind}"),
            Change::Removed(kind) => format!("removed {kind}"),
            Change::ChangedLink => "changed link".into(),
            Change::AddedFile(size) => format!("added {:>13}", file_size(*size as f64, 2, false)),
            Change::RemovedFile(size) => {
                format!("removed {:>11}", file_size(*size as f64, 2, false))
            }
            Change::Modified(None) => "modified".into(),
            Change::Modified(Some((added, removed))) => format!(
                "{:>9} {:>9}",
                file_size(*added as f64, 1, true),
                file_size(-(*removed as f64), 1, true)
            ),
            Change::Owner(u1, g1, u2, g2) => format!(
                "[{}:{} -> {}:{}]",
                u1.text(),
                g1.text(),
                u2.text(),
                g2.text()
            ),
            Change::Mode(m1, m2) => format!("[{m1} -> {m2}]"),
            Change::Time(attr, t1, t2) => {
                let show = |ns: i64| {
                    local_time(ns)
                        .map(|t| t.format("%a, %Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| ns.to_string())
                };
                format!("[{attr}: {} -> {}]", show(*t1), show(*t2))
            }
        }
    }

    /// The change as the JSON object borg prints (keys sorted).
    pub fn json(&self) -> String {
        let ty = |t: &str| format!("\"type\": {}", format::json_str(t));
        match self {
            Change::Added(_) | Change::Removed(_) | Change::ChangedLink => {
                format!("{{{}}}", ty(&self.text()))
            }
            Change::AddedFile(size) => format!("{{\"size\": {size}, {}}}", ty("added")),
            Change::RemovedFile(size) => format!("{{\"size\": {size}, {}}}", ty("removed")),
            Change::Modified(None) => format!("{{{}}}", ty("modified")),
            Change::Modified(Some((added, removed))) => format!(
                "{{\"added\": {added}, \"removed\": {removed}, {}}}",
                ty("modified")
            ),
            Change::Owner(u1, g1, u2, g2) => format!(
                "{{\"new_group\": {}, \"new_user\": {}, \"old_group\": {}, \"old_user\": {}, {}}}",
                g2.json(),
                u2.json(),
                g1.json(),
                u1.json(),
                ty("owner")
            ),
            Change::Mode(m1, m2) => format!(
                "{{\"new_mode\": {}, \"old_mode\": {}, {}}}",
                format::json_str(m2),
                format::json_str(m1),
                ty("mode")
            ),
            Change::Time(attr, t1, t2) => {
                let show = |ns: i64| {
                    local_time(ns)
                        .map(|t| format::json_str(&format::isoformat(&t)))
                        .unwrap_or_else(|| "null".into())
                };
                format!(
                    "{{\"new_{attr}\": {}, \"old_{attr}\": {}, {}}}",
                    show(*t2),
                    show(*t1),
                    ty(attr)
                )
            }
        }
    }
}

/// borg's `sizeof_fmt_decimal(num, suffix='B', sep=' ', precision, sign)`.
fn file_size(num: f64, precision: usize, sign: bool) -> String {
    const UNITS: [&str; 9] = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"];
    let plus = if sign && num > 0.0 { "+" } else { "" };
    let mut num = num;
    let mut prec = 0;
    for (i, unit) in UNITS.iter().enumerate() {
        // Python's `abs(round(num, precision)) < power`
        let rounded: f64 = format!("{:.precision$}", num.abs())
            .parse()
            .unwrap_or(num.abs());
        if i + 1 == UNITS.len() || rounded < 1000.0 {
            // Python prints -0.0 as "-0"; borg only passes ints, where -0 is 0
            let num = if num == 0.0 { 0.0 } else { num };
            return format!("{plus}{num:.prec$} {unit}B");
        }
        num /= 1000.0;
        prec = precision;
    }
    unreachable!("the last unit always returns")
}

/// A JSON string for bytes decoded like Python's `surrogateescape` and dumped with
/// `ensure_ascii` (undecodable bytes become `\udcXX`).
pub fn json_surrogate_str(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for piece in bytes.utf8_chunks() {
        let s = format::json_str(piece.valid());
        out.push_str(&s[1..s.len() - 1]);
        for b in piece.invalid() {
            out.push_str(&format!("\\udc{b:02x}"));
        }
    }
    out.push('"');
    out
}

/// Code points of bytes decoded with `surrogateescape`: the order Python's `sorted` puts
/// borg's path strings in.
fn python_sort_key(bytes: &[u8]) -> Vec<u32> {
    let mut key = Vec::with_capacity(bytes.len());
    for piece in bytes.utf8_chunks() {
        key.extend(piece.valid().chars().map(|c| c as u32));
        key.extend(piece.invalid().iter().map(|&b| 0xdc00 + u32::from(b)));
    }
    key
}

/// Sorts diff results by path as borg's `--sort` does.
pub fn sort_results(results: &mut [(Vec<u8>, ItemDiff)]) {
    results.sort_by_cached_key(|(path, _)| python_sort_key(path));
}

/// The comparison of one path in both archives (borg's `ItemDiff`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemDiff {
    /// Nothing relevant changed.
    pub equal: bool,
    /// What changed, in borg's order (empty when `equal`).
    pub changes: Vec<Change>,
}

impl ItemDiff {
    /// The line `borg diff` prints: the changes left-aligned in 19 columns, then the path.
    /// borg's stdout replaces what is not UTF-8 (`errors='replace'`), so an undecodable byte
    /// shows as `?`.
    pub fn text(&self, path: &[u8]) -> String {
        let changes: Vec<String> = self.changes.iter().map(Change::text).collect();
        format!(
            "{:<19} {}",
            changes.join(" "),
            format::remove_surrogates(path)
        )
    }

    /// The line `borg diff --json-lines` prints.
    pub fn json_line(&self, path: &[u8]) -> String {
        let changes: Vec<String> = self.changes.iter().map(Change::json).collect();
        format!(
            "{{\"changes\": [{}], \"path\": {}}}",
            changes.join(", "),
            json_surrogate_str(path)
        )
    }
}

fn deleted_item(path: &[u8]) -> Item {
    let mut item = Item::new(path.to_vec(), 0);
    item.deleted = Some(true);
    item.chunks = Some(Vec::new());
    item
}

fn is_deleted(item: &Item) -> bool {
    item.deleted.unwrap_or(false)
}

/// Reads chunk contents of one item one chunk at a time.
struct ChunkStream<'a> {
    ids: std::slice::Iter<'a, crate::ChunkListEntry>,
    data: Vec<u8>,
    pos: usize,
}

impl ChunkStream<'_> {
    /// The unread rest of the current chunk, fetching the next one when it is used up;
    /// `None` at the end.
    fn fill(&mut self, repository: &mut dyn Repository, key: &Key) -> ReadResult<Option<&[u8]>> {
        while self.pos >= self.data.len() {
            let Some(entry) = self.ids.next() else {
                return Ok(None);
            };
            self.data = fetch_object(repository, key, &entry.id)?;
            self.pos = 0;
        }
        Ok(Some(&self.data[self.pos..]))
    }
}

/// borg's `chunks_contents_equal`: compares the plaintext of two chunk lists regardless of
/// how it is cut into chunks.
fn contents_equal(
    repository: &mut dyn Repository,
    key: &Key,
    a: &[crate::ChunkListEntry],
    b: &[crate::ChunkListEntry],
) -> ReadResult<bool> {
    let mut sa = ChunkStream {
        ids: a.iter(),
        data: Vec::new(),
        pos: 0,
    };
    let mut sb = ChunkStream {
        ids: b.iter(),
        data: Vec::new(),
        pos: 0,
    };
    loop {
        let n = {
            let ra = sa.fill(repository, key)?.map(<[u8]>::to_vec);
            let rb = sb.fill(repository, key)?;
            match (ra, rb) {
                (None, None) => return Ok(true),
                (Some(_), None) | (None, Some(_)) => return Ok(false),
                (Some(x), Some(y)) => {
                    let n = x.len().min(y.len());
                    if x[..n] != y[..n] {
                        return Ok(false);
                    }
                    n
                }
            }
        };
        sa.pos += n;
        sb.pos += n;
    }
}

/// Compares two items (borg's `ItemDiff.__init__`); `item1`/`item2` are already replaced by
/// their hard link masters.
fn item_diff(
    repository: &mut dyn Repository,
    key: &Key,
    item1: &Item,
    item2: &Item,
    opts: &DiffOptions,
) -> ReadResult<ItemDiff> {
    let equal = items_equal(repository, key, item1, item2, opts)?;
    if equal {
        return Ok(ItemDiff {
            equal,
            changes: Vec::new(),
        });
    }
    let (del1, del2) = (is_deleted(item1), is_deleted(item2));
    let presence = |kind: &'static str| match (del1, del2) {
        (false, true) => Some(Change::Removed(kind)),
        (true, false) => Some(Change::Added(kind)),
        _ => None,
    };
    let is_type = |t: u32| item1.file_type() == t || item2.file_type() == t;
    let mut changes = Vec::new();
    if item1.is_link() || item2.is_link() {
        let link = presence("link").or_else(|| match (&item1.source, &item2.source) {
            (Some(s1), Some(s2)) if s1 != s2 => Some(Change::ChangedLink),
            _ => None,
        });
        changes.extend(link);
    }
    if let (Some(c1), Some(c2)) = (&item1.chunks, &item2.chunks) {
        changes.push(if del1 {
            Change::AddedFile(item2.get_size(false))
        } else if del2 {
            Change::RemovedFile(item1.get_size(false))
        } else if !opts.can_compare_chunk_ids {
            Change::Modified(None)
        } else {
            let ids1: HashSet<_> = c1.iter().map(|c| c.id).collect();
            let ids2: HashSet<_> = c2.iter().map(|c| c.id).collect();
            let added = c2
                .iter()
                .filter(|c| !ids1.contains(&c.id))
                .map(|c| c.size)
                .sum();
            let removed = c1
                .iter()
                .filter(|c| !ids2.contains(&c.id))
                .map(|c| c.size)
                .sum();
            Change::Modified(Some((added, removed)))
        });
    }
    for (t, kind) in [
        (crate::item::S_IFDIR, "directory"),
        (S_IFBLK, "blkdev"),
        (S_IFCHR, "chrdev"),
        (S_IFIFO, "fifo"),
    ] {
        if is_type(t) {
            changes.extend(presence(kind));
        }
    }
    if !(del1 || del2 || opts.content_only) {
        let owner = |item: &Item| {
            if opts.numeric_ids {
                (
                    item.uid.map_or(Owner::None, Owner::Id),
                    item.gid.map_or(Owner::None, Owner::Id),
                )
            } else {
                (
                    item.user.clone().map_or(Owner::None, Owner::Name),
                    item.group.clone().map_or(Owner::None, Owner::Name),
                )
            }
        };
        let ((u1, g1), (u2, g2)) = (owner(item1), owner(item2));
        if (&u1, &g1) != (&u2, &g2) {
            changes.push(Change::Owner(u1, g1, u2, g2));
        }
        if let (Some(m1), Some(m2)) = (item1.mode, item2.mode) {
            if m1 != m2 {
                changes.push(Change::Mode(format::filemode(m1), format::filemode(m2)));
            }
        }
        for (attr, t1, t2) in [
            ("ctime", item1.ctime, item2.ctime),
            ("mtime", item1.mtime, item2.mtime),
        ] {
            if let (Some(t1), Some(t2)) = (t1, t2) {
                if t1 != t2 {
                    changes.push(Change::Time(attr, t1, t2));
                }
            }
        }
    }
    Ok(ItemDiff { equal, changes })
}

/// borg's `ItemDiff._equal`.
fn items_equal(
    repository: &mut dyn Repository,
    key: &Key,
    item1: &Item,
    item2: &Item,
    opts: &DiffOptions,
) -> ReadResult<bool> {
    if is_deleted(item1) && is_deleted(item2) {
        return Ok(true);
    }
    if item1.deleted != item2.deleted || item1.source != item2.source {
        return Ok(false);
    }
    if !opts.content_only {
        let same_owner = if opts.numeric_ids {
            item1.uid == item2.uid && item1.gid == item2.gid
        } else {
            item1.user == item2.user && item1.group == item2.group
        };
        if item1.mode != item2.mode
            || item1.ctime != item2.ctime
            || item1.mtime != item2.mtime
            || !same_owner
        {
            return Ok(false);
        }
    }
    let (Some(c1), Some(c2)) = (&item1.chunks, &item2.chunks) else {
        return Ok(true);
    };
    if opts.can_compare_chunk_ids {
        return Ok(c1 == c2);
    }
    if item1.get_size(false) != item2.get_size(false) {
        return Ok(false);
    }
    contents_equal(repository, key, c1, c2)
}

/// The state of `compare_archives_iter`.
struct Comparer<'o> {
    opts: &'o DiffOptions,
    /// master path -> (item in archive 1, item in archive 2)
    masters: HashMap<Vec<u8>, (Item, Item)>,
    deferred: Vec<(Item, Item)>,
}

impl Comparer<'_> {
    fn master_seen(&self, item: &Item) -> bool {
        match &item.source {
            Some(src) if hardlinkable(item.mode.unwrap_or(0)) => self.masters.contains_key(src),
            _ => true,
        }
    }

    fn is_master(item: &Item) -> bool {
        item.hardlink_master.unwrap_or(true)
            && item.source.is_none()
            && hardlinkable(item.mode.unwrap_or(0))
    }

    fn update_masters(&mut self, item1: &Item, item2: &Item) {
        if Self::is_master(item1) || Self::is_master(item2) {
            self.masters
                .insert(item1.path.clone(), (item1.clone(), item2.clone()));
        }
    }

    /// Records masters and defers the pair when a master is still unknown; `true` if deferred.
    fn defer_if_necessary(&mut self, item1: &Item, item2: &Item) -> bool {
        self.update_masters(item1, item2);
        let defer = !self.master_seen(item1) || !self.master_seen(item2);
        if defer {
            self.deferred.push((item1.clone(), item2.clone()));
        }
        defer
    }

    fn compare(
        &self,
        repository: &mut dyn Repository,
        key: &Key,
        item1: &Item,
        item2: &Item,
    ) -> ReadResult<ItemDiff> {
        let master = |item: &Item, second: bool| {
            if !hardlinkable(item.mode.unwrap_or(0)) {
                return None;
            }
            let (m1, m2) = self.masters.get(item.source.as_ref()?)?;
            Some(if second { m2 } else { m1 })
        };
        let item1 = master(item1, false).unwrap_or(item1);
        let item2 = master(item2, true).unwrap_or(item2);
        item_diff(repository, key, item1, item2, self.opts)
    }
}

/// Items without a partner yet, by path, in arrival order (borg's `OrderedDict` orphans).
#[derive(Default)]
struct Orphans {
    seq: u64,
    by_path: HashMap<Vec<u8>, u64>,
    items: BTreeMap<u64, Item>,
}

impl Orphans {
    fn insert(&mut self, item: Item) {
        if let Some(old) = self.by_path.remove(&item.path) {
            self.items.remove(&old);
        }
        self.seq += 1;
        self.by_path.insert(item.path.clone(), self.seq);
        self.items.insert(self.seq, item);
    }

    fn pop(&mut self, path: &[u8]) -> Option<Item> {
        let seq = self.by_path.remove(path)?;
        self.items.remove(&seq)
    }

    fn into_items(self) -> impl Iterator<Item = Item> {
        self.items.into_values()
    }
}

/// Compares the items of `archive1` and `archive2` that `matcher` selects (borg's
/// `Archive.compare_archives_iter`), calling `emit` with each path and its comparison in
/// borg's order, equal ones included.
pub fn compare_archives(
    repository: &mut dyn Repository,
    key: &Key,
    archive1: &ArchiveMeta,
    archive2: &ArchiveMeta,
    matcher: &PatternMatcher,
    opts: &DiffOptions,
    emit: &mut dyn FnMut(Vec<u8>, ItemDiff),
) -> ReadResult<()> {
    let mut cursor1 = ItemCursor::new(archive1);
    let mut cursor2 = ItemCursor::new(archive2);
    let next = |cursor: &mut ItemCursor, repository: &mut dyn Repository| loop {
        match cursor.next_item(repository, key)? {
            None => return Ok::<_, ReadError>(None),
            Some(item) => {
                if item.part.is_some() && !opts.consider_part_files {
                    continue;
                }
                if matcher.matches(&item.path) {
                    return Ok(Some(item));
                }
            }
        }
    };
    let mut state = Comparer {
        opts,
        masters: HashMap::new(),
        deferred: Vec::new(),
    };
    let mut orphans1 = Orphans::default();
    let mut orphans2 = Orphans::default();
    loop {
        let item1 = next(&mut cursor1, repository)?;
        let item2 = next(&mut cursor2, repository)?;
        if item1.is_none() && item2.is_none() {
            break;
        }
        if let (Some(i1), Some(i2)) = (&item1, &item2) {
            if i1.path == i2.path {
                if !state.defer_if_necessary(i1, i2) {
                    emit(i1.path.clone(), state.compare(repository, key, i1, i2)?);
                }
                continue;
            }
        }
        if let Some(i1) = item1 {
            match orphans2.pop(&i1.path) {
                Some(i2) => {
                    if !state.defer_if_necessary(&i1, &i2) {
                        emit(i1.path.clone(), state.compare(repository, key, &i1, &i2)?);
                    }
                }
                None => orphans1.insert(i1),
            }
        }
        if let Some(i2) = item2 {
            match orphans1.pop(&i2.path) {
                Some(i1) => {
                    if !state.defer_if_necessary(&i1, &i2) {
                        emit(i1.path.clone(), state.compare(repository, key, &i1, &i2)?);
                    }
                }
                None => orphans2.insert(i2),
            }
        }
    }
    for added in orphans2.into_items() {
        let deleted = deleted_item(&added.path);
        state.update_masters(&deleted, &added);
        emit(
            added.path.clone(),
            state.compare(repository, key, &deleted, &added)?,
        );
    }
    for removed in orphans1.into_items() {
        let deleted = deleted_item(&removed.path);
        state.update_masters(&removed, &deleted);
        emit(
            removed.path.clone(),
            state.compare(repository, key, &removed, &deleted)?,
        );
    }
    for (item1, item2) in std::mem::take(&mut state.deferred) {
        emit(
            item1.path.clone(),
            state.compare(repository, key, &item1, &item2)?,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_borg() {
        assert_eq!(file_size(4096.0, 1, true), "+4.1 kB");
        assert_eq!(file_size(-1024.0, 1, true), "-1.0 kB");
        assert_eq!(file_size(-0.0, 1, true), "0 B");
        assert_eq!(file_size(13.0, 1, true), "+13 B");
        assert_eq!(file_size(2048.0, 2, false), "2.05 kB");
        assert_eq!(file_size(999_960.0, 1, true), "+1.0 MB");
    }

    #[test]
    fn change_rendering() {
        let d = ItemDiff {
            equal: false,
            changes: vec![Change::Modified(Some((4096, 1024)))],
        };
        assert_eq!(d.text(b"input/f"), "  +4.1 kB   -1.0 kB input/f");
        assert_eq!(
            d.json_line(b"a\xff"),
            "{\"changes\": [{\"added\": 4096, \"removed\": 1024, \"type\": \"modified\"}], \"path\": \"a\\udcff\"}"
        );
        let d = ItemDiff {
            equal: false,
            changes: vec![Change::Added("directory")],
        };
        assert_eq!(d.text(b"x\xff"), "added directory     x?");
        let owner = Change::Owner(
            Owner::Name(b"u".to_vec()),
            Owner::None,
            Owner::Id(5),
            Owner::Name(b"g".to_vec()),
        );
        assert_eq!(owner.text(), "[u:None -> 5:g]");
        assert_eq!(
            owner.json(),
            "{\"new_group\": \"g\", \"new_user\": 5, \"old_group\": null, \"old_user\": \"u\", \"type\": \"owner\"}"
        );
    }

    #[test]
    fn sort_key_puts_surrogates_where_python_does() {
        let mut paths: Vec<Vec<u8>> = vec![
            "\u{e000}".as_bytes().to_vec(),
            b"\xff".to_vec(),
            "\u{d7ff}".as_bytes().to_vec(),
        ];
        paths.sort_by_cached_key(|p| python_sort_key(p));
        assert_eq!(paths[0], "\u{d7ff}".as_bytes());
        assert_eq!(paths[1], b"\xff");
    }

    #[test]
    fn chunker_params_normalized() {
        let old = Value::Array(vec![19.into(), 23.into(), 21.into(), 4095.into()]);
        let new = Value::Array(vec![
            "buzhash".into(),
            19.into(),
            23.into(),
            21.into(),
            4095.into(),
        ]);
        assert_eq!(
            normalize_chunker_params(&old),
            normalize_chunker_params(&new)
        );
    }
}
