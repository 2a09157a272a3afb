//! Writing an archive as a tar stream (borg 1.2.4 `archiver.py` `do_export_tar` /
//! `_export_tar`, which uses Python's `tarfile` in `w|` mode with `GNU_FORMAT`).
//!
//! The stream is byte for byte what borg 1.2.4 writes: one 512-byte GNU header per member
//! (magic `"ustar  \0"`, octal number fields, base-256 for numbers that do not fit, GNU
//! `././@LongLink` members for names and link targets over 100 bytes), contents padded to 512
//! bytes, two zero blocks at the end and zero padding to a multiple of 10240 bytes
//! (tarfile's `RECORDSIZE`). As in borg, export is lossy: only whole-second mtimes, no atime,
//! ctime, xattrs, ACLs or flags.
//!
//! Hard links follow borg's rules: the first exported link of a group carries the content and
//! later ones become tar hard links (`LNKTYPE`) to it. When a selection (`PATH` arguments,
//! excludes or `strip_components`) leaves out the item that carries the chunks, the first
//! selected link gets the content instead.
//!
//! Compression is not done here: borg pipes the stream through an external filter program
//! (`gzip`, `xz`, ...); see [`tar_filter_for`].

use std::collections::HashMap;
use std::io::{Read, Write};

use rborg_crypto::Key;
use rborg_repository::Repository;

use crate::archive::{ArchiveMeta, ContentReader, ReadError};
use crate::diff::ItemCursor;
use crate::format::remove_surrogates;
use crate::item::{hardlinkable, strip_components};
use crate::item::{ChunkListEntry, Item, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG};
use crate::patterns::PatternMatcher;

/// tar block size.
pub const BLOCKSIZE: usize = 512;
/// Python tarfile's record size: the stream is padded to a multiple of it.
pub const RECORDSIZE: usize = BLOCKSIZE * 20;

/// The filter program borg 1.2.4 picks for an output file name with `--tar-filter=auto`
/// (`helpers/misc.py` `get_tar_filter`): `None` for an uncompressed tar or stdout.
pub fn tar_filter_for(file_name: &str) -> Option<&'static str> {
    let ends = |suffixes: &[&str]| suffixes.iter().any(|s| file_name.ends_with(s));
    if ends(&[".tar.gz", ".tgz"]) {
        Some("gzip")
    } else if ends(&[".tar.bz2", ".tbz"]) {
        Some("bzip2")
    } else if ends(&[".tar.xz", ".txz"]) {
        Some("xz")
    } else if ends(&[".tar.lz4"]) {
        Some("lz4")
    } else if ends(&[".tar.zstd", ".tar.zst"]) {
        Some("zstd")
    } else {
        None
    }
}

/// Options of `borg export-tar`.
#[derive(Debug, Clone, Default)]
pub struct ExportTarOptions {
    /// `--strip-components N`.
    pub strip_components: usize,
    /// `--consider-part-files`.
    pub consider_part_files: bool,
    /// `--progress`: report [`ExportEvent::Total`] first (an extra pass over the item metadata,
    /// as borg does) and [`ExportEvent::Data`] for content read.
    pub progress: bool,
}

/// What the export reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportEvent {
    /// A member is about to be written (borg's `--list` line: the path before stripping).
    Listed(String),
    /// A non-fatal problem (borg prints it and exits with code 1).
    Warning(String),
    /// With `progress`: the content size of all selected items.
    Total(u64),
    /// With `progress`: `bytes` of the content of the item at `path` were written.
    Data {
        /// The item's (stripped) path.
        path: String,
        /// Bytes written.
        bytes: u64,
    },
}

/// What can make the export fail.
#[derive(Debug, thiserror::Error)]
pub enum ExportTarError {
    /// Reading the archive failed (missing or corrupted object, bad item).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing the stream, or reading a content chunk, failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A value does not fit in its tar header field (tarfile's "overflow in number field").
    #[error("{0}")]
    Header(String),
}

/// Counts of the export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Members written.
    pub members: u64,
    /// Items skipped with a warning (unsupported file types).
    pub warnings: u64,
}

/// One tar member header (Python's `TarInfo` fields borg sets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarHeader {
    /// Member name; a `/` is appended for directories when writing, as tarfile does.
    pub name: Vec<u8>,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Content size (0 for everything but regular files with content).
    pub size: u64,
    /// Modification time in whole seconds.
    pub mtime: i64,
    /// Type flag: `b'0'` regular, `b'1'` hard link, `b'2'` symlink, `b'3'` char device,
    /// `b'4'` block device, `b'5'` directory, `b'6'` fifo.
    pub typeflag: u8,
    /// Link target (symlinks, hard links).
    pub linkname: Vec<u8>,
    /// Owner user name.
    pub uname: Vec<u8>,
    /// Owner group name.
    pub gname: Vec<u8>,
    /// Device major number.
    pub devmajor: u64,
    /// Device minor number.
    pub devminor: u64,
}

const GNU_MAGIC: &[u8; 8] = b"ustar  \0";
const LONGNAME: u8 = b'L';
const LONGLINK: u8 = b'K';

/// tarfile's `stn`: `s` truncated or NUL-padded to `length`.
fn put_str(buf: &mut Vec<u8>, s: &[u8], length: usize) {
    let n = s.len().min(length);
    buf.extend_from_slice(&s[..n]);
    buf.resize(buf.len() + (length - n), 0);
}

/// tarfile's `itn` in GNU format: zero-padded octal and a NUL, or base-256 (first byte 0x80
/// for positive, 0xff for negative) when the octal digits do not suffice.
fn put_num(buf: &mut Vec<u8>, n: i128, digits: usize) -> Result<(), ExportTarError> {
    let octal_limit = 8i128.pow(digits as u32 - 1);
    let b256_limit = 256i128.pow(digits as u32 - 1);
    if (0..octal_limit).contains(&n) {
        buf.extend_from_slice(format!("{n:0width$o}", width = digits - 1).as_bytes());
        buf.push(0);
    } else if (-b256_limit..b256_limit).contains(&n) {
        let (first, mut v) = if n >= 0 {
            (0x80u8, n)
        } else {
            (0xffu8, 256i128.pow(digits as u32) + n)
        };
        let mut bytes = vec![0u8; digits - 1];
        for b in bytes.iter_mut().rev() {
            *b = (v & 0xff) as u8;
            v >>= 8;
        }
        buf.push(first);
        buf.extend_from_slice(&bytes);
    } else {
        return Err(ExportTarError::Header("overflow in number field".into()));
    }
    Ok(())
}

/// tarfile's `_create_header`: one 512-byte block with its checksum.
#[allow(clippy::too_many_arguments)]
fn header_block(
    name: &[u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    typeflag: u8,
    linkname: &[u8],
    uname: &[u8],
    gname: &[u8],
    dev: Option<(u64, u64)>,
) -> Result<Vec<u8>, ExportTarError> {
    let mut b = Vec::with_capacity(BLOCKSIZE);
    put_str(&mut b, name, 100);
    put_num(&mut b, i128::from(mode & 0o7777), 8)?;
    put_num(&mut b, i128::from(uid), 8)?;
    put_num(&mut b, i128::from(gid), 8)?;
    put_num(&mut b, i128::from(size), 12)?;
    put_num(&mut b, i128::from(mtime), 12)?;
    b.extend_from_slice(b"        ");
    b.push(typeflag);
    put_str(&mut b, linkname, 100);
    b.extend_from_slice(GNU_MAGIC);
    put_str(&mut b, uname, 32);
    put_str(&mut b, gname, 32);
    match dev {
        Some((major, minor)) => {
            put_num(&mut b, i128::from(major), 8)?;
            put_num(&mut b, i128::from(minor), 8)?;
        }
        None => b.extend_from_slice(&[0u8; 16]),
    }
    put_str(&mut b, b"", 155);
    b.resize(BLOCKSIZE, 0);
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    let chksum = format!("{sum:06o}\0");
    b[148..155].copy_from_slice(chksum.as_bytes());
    Ok(b)
}

/// `data` padded with NULs to whole blocks.
fn padded(mut data: Vec<u8>) -> Vec<u8> {
    let rem = data.len() % BLOCKSIZE;
    if rem > 0 {
        data.resize(data.len() + BLOCKSIZE - rem, 0);
    }
    data
}

/// tarfile's `_create_gnu_long_header`: a `././@LongLink` member holding `name` and a NUL.
fn long_header(name: &[u8], typeflag: u8) -> Result<Vec<u8>, ExportTarError> {
    let mut payload = name.to_vec();
    payload.push(0);
    let mut out = header_block(
        b"././@LongLink",
        0,
        0,
        0,
        payload.len() as u64,
        0,
        typeflag,
        b"",
        b"",
        b"",
        None,
    )?;
    out.extend(padded(payload));
    Ok(out)
}

impl TarHeader {
    /// The header blocks tarfile's `create_gnu_header` writes for this member.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ExportTarError> {
        let mut name = self.name.clone();
        if self.typeflag == b'5' && !name.ends_with(b"/") {
            name.push(b'/');
        }
        let mut out = Vec::new();
        if self.linkname.len() > 100 {
            out.extend(long_header(&self.linkname, LONGLINK)?);
        }
        if name.len() > 100 {
            out.extend(long_header(&name, LONGNAME)?);
        }
        let dev = matches!(self.typeflag, b'3' | b'4').then_some((self.devmajor, self.devminor));
        out.extend(header_block(
            &name,
            self.mode,
            self.uid,
            self.gid,
            self.size,
            self.mtime,
            self.typeflag,
            &self.linkname,
            &self.uname,
            &self.gname,
            dev,
        )?);
        Ok(out)
    }
}

/// glibc's `major()` (Python's `os.major`).
fn dev_major(rdev: u64) -> u64 {
    ((rdev >> 8) & 0xfff) | ((rdev >> 32) & 0xffff_f000)
}

/// glibc's `minor()` (Python's `os.minor`).
fn dev_minor(rdev: u64) -> u64 {
    (rdev & 0xff) | ((rdev >> 12) & 0xffff_ff00)
}

/// Hard link masters a selection left out: path -> (their chunks, the path of the member that
/// took over the content once written) (borg's `hardlink_masters` in `_export_tar`).
type Masters = HashMap<Vec<u8>, (Option<Vec<ChunkListEntry>>, Option<Vec<u8>>)>;

/// Counts stream bytes for the final record padding.
struct Counting<'a> {
    out: &'a mut dyn Write,
    written: u64,
}

impl Counting<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }
}

/// The state of one export.
struct Exporter<'a> {
    repository: &'a mut dyn Repository,
    key: &'a Key,
    opts: &'a ExportTarOptions,
    matcher: &'a PatternMatcher,
    partial: bool,
    masters: Option<Masters>,
    events: &'a mut dyn FnMut(ExportEvent),
}

impl Exporter<'_> {
    /// borg's `build_filter` with `peek_and_store_hardlink_masters`: whether `item` is
    /// exported, remembering left-out masters.
    fn select(&mut self, item: &Item) -> bool {
        if item.part.is_some() && !self.opts.consider_part_files {
            return false;
        }
        let matched = self.matcher.matches(&item.path)
            && !strip_components(&item.path, self.opts.strip_components).is_empty();
        if let Some(masters) = &mut self.masters {
            if self.partial
                && !matched
                && hardlinkable(item.mode.unwrap_or(0))
                && item.hardlink_master.unwrap_or(true)
                && item.source.is_none()
            {
                masters.insert(item.path.clone(), (item.chunks.clone(), None));
            }
        }
        matched
    }

    /// borg's `sum(item.get_size(hardlink_masters) for item in archive.iter_items(filter))`.
    fn total_size(&mut self, meta: &ArchiveMeta) -> Result<u64, ExportTarError> {
        let mut cursor = ItemCursor::new(meta);
        let mut total = 0u64;
        while let Some(item) = cursor.next_item(self.repository, self.key)? {
            if !self.select(&item) {
                continue;
            }
            let size = match (&item.chunks, &item.source, &self.masters) {
                (None, Some(src), Some(masters)) if item.size.is_none() && !item.is_link() => {
                    match masters.get(src) {
                        Some((Some(chunks), _)) => chunks.iter().map(|c| c.size).sum(),
                        _ => 0,
                    }
                }
                _ => item.get_size(false),
            };
            total += size;
        }
        Ok(total)
    }

    /// borg's `item_to_tarinfo`: the header and, for content, the chunks to write. `None`
    /// for file types tar cannot hold.
    fn tarinfo(&mut self, item: &Item) -> Option<(TarHeader, Option<Vec<ChunkListEntry>>)> {
        let mode = item.mode.unwrap_or(0);
        let mtime_ns = item.mtime.unwrap_or(0);
        let mut header = TarHeader {
            name: item.path.clone(),
            // Python's int(item.mtime / 1e9)
            mtime: (mtime_ns as f64 / 1e9).trunc() as i64,
            mode: mode & 0o7777,
            uid: item.uid.unwrap_or(0),
            gid: item.gid.unwrap_or(0),
            uname: item.user.clone().unwrap_or_default(),
            gname: item.group.clone().unwrap_or_default(),
            ..TarHeader::default()
        };
        let mut content = None;
        match mode & crate::item::S_IFMT {
            S_IFREG => {
                header.typeflag = b'0';
                match &item.source {
                    Some(src) => {
                        let stripped = strip_components(src, self.opts.strip_components);
                        let (chunks, linkname) = match &self.masters {
                            None => (None, Some(stripped)),
                            Some(m) => m.get(src).cloned().unwrap_or((None, Some(stripped))),
                        };
                        if let Some(linkname) = linkname {
                            header.typeflag = b'1';
                            header.linkname = linkname;
                        } else if let Some(chunks) = chunks {
                            let mut with_content = item.clone();
                            with_content.chunks = Some(chunks.clone());
                            header.size = with_content.get_size(false);
                            content = Some(chunks);
                            if let Some(m) = &mut self.masters {
                                m.insert(src.clone(), (None, Some(item.path.clone())));
                            }
                        }
                    }
                    None => {
                        header.size = item.get_size(false);
                        content = Some(item.chunks.clone().unwrap_or_default());
                    }
                }
            }
            S_IFDIR => header.typeflag = b'5',
            S_IFLNK => {
                header.typeflag = b'2';
                header.linkname = item.source.clone().unwrap_or_default();
            }
            S_IFBLK | S_IFCHR => {
                header.typeflag = if mode & crate::item::S_IFMT == S_IFBLK {
                    b'4'
                } else {
                    b'3'
                };
                let rdev = item.rdev.unwrap_or(0);
                header.devmajor = dev_major(rdev);
                header.devminor = dev_minor(rdev);
            }
            S_IFIFO => header.typeflag = b'6',
            other => {
                (self.events)(ExportEvent::Warning(format!(
                    "{}: unsupported file type {:o} for tar export",
                    remove_surrogates(&item.path),
                    other
                )));
                return None;
            }
        }
        Some((header, content))
    }

    /// Writes `size` bytes of content from `chunks` (tarfile's `copyfileobj`, which fails
    /// with "unexpected end of data" when the content is shorter) and the block padding.
    fn write_content(
        &mut self,
        out: &mut Counting<'_>,
        path: &str,
        chunks: &[ChunkListEntry],
        size: u64,
    ) -> Result<(), ExportTarError> {
        let mut reader = ContentReader::new(self.repository, self.key, chunks).take(size);
        // tarfile's copyfileobj reads 16 KiB at a time; progress advances by the same steps
        let mut buf = vec![0u8; 16 * 1024];
        let mut left = size;
        while left > 0 {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "unexpected end of data",
                )
                .into());
            }
            out.write(&buf[..n])?;
            left -= n as u64;
            if self.opts.progress {
                (self.events)(ExportEvent::Data {
                    path: path.to_string(),
                    bytes: n as u64,
                });
            }
        }
        let rem = (size % BLOCKSIZE as u64) as usize;
        if rem > 0 {
            out.write(&vec![0u8; BLOCKSIZE - rem])?;
        }
        Ok(())
    }
}

/// Writes the items of `meta` that `matcher` selects to `out` as a GNU tar stream, exactly as
/// borg 1.2.4's `export-tar` does. `events` receives `--list` lines, warnings and progress;
/// include patterns that matched nothing are reported as warnings at the end.
pub fn export_tar(
    repository: &mut dyn Repository,
    key: &Key,
    meta: &ArchiveMeta,
    matcher: &PatternMatcher,
    opts: &ExportTarOptions,
    out: &mut dyn Write,
    events: &mut dyn FnMut(ExportEvent),
) -> Result<ExportSummary, ExportTarError> {
    let partial = !matcher.is_empty() || opts.strip_components > 0;
    let mut ex = Exporter {
        repository,
        key,
        opts,
        matcher,
        partial,
        masters: partial.then(HashMap::new),
        events,
    };
    if opts.progress {
        let total = ex.total_size(meta)?;
        (ex.events)(ExportEvent::Total(total));
    }
    let mut out = Counting { out, written: 0 };
    let mut summary = ExportSummary::default();
    let mut cursor = ItemCursor::new(meta);
    while let Some(mut item) = cursor.next_item(ex.repository, key)? {
        if !ex.select(&item) {
            continue;
        }
        let original_path = item.path.clone();
        item.path = strip_components(&original_path, opts.strip_components);
        let Some((header, content)) = ex.tarinfo(&item) else {
            summary.warnings += 1;
            continue;
        };
        (ex.events)(ExportEvent::Listed(remove_surrogates(&original_path)));
        out.write(&header.to_bytes()?)?;
        if let Some(chunks) = content {
            let path = remove_surrogates(&item.path);
            ex.write_content(&mut out, &path, &chunks, header.size)?;
        }
        summary.members += 1;
    }
    out.write(&[0u8; BLOCKSIZE * 2])?;
    let rem = (out.written % RECORDSIZE as u64) as usize;
    if rem > 0 {
        out.write(&vec![0u8; RECORDSIZE - rem])?;
    }
    out.out.flush()?;
    for pattern in matcher.unmatched_includes() {
        (ex.events)(ExportEvent::Warning(format!(
            "Include pattern '{pattern}' never matched."
        )));
        summary.warnings += 1;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_tarfile() {
        let mut b = Vec::new();
        put_num(&mut b, 0o644, 8).unwrap();
        assert_eq!(b, b"0000644\0");
        let mut b = Vec::new();
        put_num(&mut b, 8i128.pow(7), 8).unwrap();
        assert_eq!(b, [0x80, 0, 0, 0, 0, 0x20, 0, 0]);
        let mut b = Vec::new();
        put_num(&mut b, -1, 12).unwrap();
        assert_eq!(b, [0xff; 12]);
        assert!(put_num(&mut Vec::new(), 256i128.pow(7), 8).is_err());
    }

    #[test]
    fn headers() {
        let h = TarHeader {
            name: b"d".to_vec(),
            mode: 0o755,
            typeflag: b'5',
            ..TarHeader::default()
        };
        let bytes = h.to_bytes().unwrap();
        assert_eq!(bytes.len(), BLOCKSIZE);
        assert_eq!(&bytes[..2], b"d/");
        assert_eq!(&bytes[257..265], GNU_MAGIC);
        let long = TarHeader {
            name: vec![b'x'; 150],
            typeflag: b'0',
            ..TarHeader::default()
        };
        let bytes = long.to_bytes().unwrap();
        assert_eq!(bytes.len(), 3 * BLOCKSIZE);
        assert_eq!(&bytes[..13], b"././@LongLink");
        assert_eq!(bytes[156], LONGNAME);
    }

    #[test]
    fn filters_and_devices() {
        assert_eq!(tar_filter_for("a.tgz"), Some("gzip"));
        assert_eq!(tar_filter_for("a.tar.zst"), Some("zstd"));
        assert_eq!(tar_filter_for("a.tar"), None);
        assert_eq!(tar_filter_for("-"), None);
        // glibc's makedev()
        let makedev = |major: u64, minor: u64| {
            ((major & 0xfff) << 8)
                | ((major & !0xfff) << 32)
                | (minor & 0xff)
                | ((minor & !0xff) << 12)
        };
        for (major, minor) in [(8, 1), (0x1234, 0x56789), (0, 0)] {
            let rdev = makedev(major, minor);
            assert_eq!((dev_major(rdev), dev_minor(rdev)), (major, minor));
        }
    }
}
