//! Importing tar files: `borg import-tar` (borg 1.2.4 `archiver.py` `do_import_tar`/`_import_tar`,
//! `archive.py` `TarfileObjectProcessors`; the tar reading follows Python's `tarfile` in stream
//! mode `r|`, which borg uses).
//!
//! Every member becomes an item as borg makes it: path through `make_path_safe`, mode = the
//! header's mode field | the type's `S_IF*` bits, uid/gid, user/group names (none when empty),
//! mtime in nanoseconds. Regular files are chunked with the given chunker parameters; a
//! hardlink member becomes a regular-file item whose `source` is the link target (tar's model
//! is borg 1.2's: the first instance carries the content); symlinks keep their target in
//! `source`; devices get `rdev`. Formats: v7/ustar/GNU (long names `L`/`K`, base-256 numbers)
//! and POSIX pax (`x` and global `g` headers: path, linkpath, size, uid, gid, uname, gname,
//! mtime). borg 1.2.4 imports no xattrs/ACLs from pax headers, and neither does rborg.

use std::collections::HashMap;
use std::io::Read;

use crate::create::{CreateError, Created, Reporter};
use crate::item::{Item, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG};
use crate::manifest::Manifest;
use crate::walk::make_path_safe;
use crate::writer::{ArchiveInfo, ArchiveWriter, ChunkStore};
use rborg_chunker::ChunkerParams;

/// tar block size.
const BLOCK: usize = 512;

/// What can go wrong importing a tar file.
#[derive(Debug, thiserror::Error)]
pub enum ImportTarError {
    /// Writing the archive failed.
    #[error(transparent)]
    Write(#[from] CreateError),
    /// Reading the tar stream failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The stream is not a valid tar file (Python's `tarfile.ReadError`).
    #[error("{0}")]
    Format(String),
}

/// Result type of tar import.
pub type ImportTarResult<T> = std::result::Result<T, ImportTarError>;

/// Options of `borg import-tar`.
#[derive(Debug, Clone, Default)]
pub struct ImportTarOptions {
    /// `--chunker-params` for file contents.
    pub chunker_params: ChunkerParams,
    /// `--ignore-zeros`: skip zero blocks instead of treating them as the end of the archive
    /// (to read concatenated tar files).
    pub ignore_zeros: bool,
    /// Metadata of the new archive (comment, timestamp, command line, host, user; the chunker
    /// parameters are taken from `chunker_params`).
    pub info: ArchiveInfo,
}

/// One tar member as Python's `TarInfo` sees it.
#[derive(Debug, Clone, Default)]
struct Member {
    name: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: f64,
    typeflag: u8,
    linkname: Vec<u8>,
    uname: Vec<u8>,
    gname: Vec<u8>,
    devmajor: u64,
    devminor: u64,
}

/// Bytes up to the first NUL (Python's `nts`).
fn nts(b: &[u8]) -> Vec<u8> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    b[..end].to_vec()
}

/// A numeric header field: octal text, or base-256 when the high bit of the first byte is set
/// (Python's `nti`).
fn nti(b: &[u8]) -> ImportTarResult<u64> {
    if b.first().is_some_and(|&c| c & 0x80 != 0) {
        let mut n: u64 = u64::from(b[0] & 0x3f);
        for &c in &b[1..] {
            n = n.wrapping_shl(8) | u64::from(c);
        }
        return Ok(n);
    }
    let text = nts(b);
    let s = String::from_utf8_lossy(&text);
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| ImportTarError::Format("invalid header".into()))
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&c| c == 0)
}

/// Reads exactly one block; `None` at a clean end of the stream.
fn read_block<R: Read>(r: &mut R) -> ImportTarResult<Option<[u8; BLOCK]>> {
    let mut buf = [0u8; BLOCK];
    let mut got = 0;
    while got < BLOCK {
        let n = r.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    match got {
        0 => Ok(None),
        BLOCK => Ok(Some(buf)),
        _ => Err(ImportTarError::Format("truncated header".into())),
    }
}

fn skip<R: Read>(r: &mut R, n: u64) -> ImportTarResult<()> {
    let copied = std::io::copy(&mut r.take(n), &mut std::io::sink())?;
    if copied != n {
        return Err(ImportTarError::Format("unexpected end of data".into()));
    }
    Ok(())
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

fn read_data<R: Read>(r: &mut R, size: u64) -> ImportTarResult<Vec<u8>> {
    let mut data = Vec::new();
    r.take(size).read_to_end(&mut data)?;
    if data.len() as u64 != size {
        return Err(ImportTarError::Format("unexpected end of data".into()));
    }
    skip(r, padded(size) - size)?;
    Ok(data)
}

/// Parses pax records (`"%d %s=%s\n"`).
fn pax_records(data: &[u8]) -> ImportTarResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() && data[pos] != 0 {
        let sp = data[pos..]
            .iter()
            .position(|&c| c == b' ')
            .ok_or_else(|| ImportTarError::Format("invalid header".into()))?;
        let len: usize = std::str::from_utf8(&data[pos..pos + sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&l: &usize| l > sp + 1 && pos + l <= data.len())
            .ok_or_else(|| ImportTarError::Format("invalid header".into()))?;
        let record = &data[pos + sp + 1..pos + len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|&c| c == b'=') {
            out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        }
        pos += len;
    }
    Ok(out)
}

fn apply_pax(m: &mut Member, records: &HashMap<Vec<u8>, Vec<u8>>) {
    let num = |v: &[u8]| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    for (k, v) in records {
        match k.as_slice() {
            b"path" => m.name = v.clone(),
            b"linkpath" => m.linkname = v.clone(),
            b"uname" => m.uname = v.clone(),
            b"gname" => m.gname = v.clone(),
            b"uid" => m.uid = num(v).unwrap_or(m.uid),
            b"gid" => m.gid = num(v).unwrap_or(m.gid),
            b"size" => m.size = num(v).unwrap_or(m.size),
            b"mtime" => {
                if let Some(t) = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                {
                    m.mtime = t;
                }
            }
            _ => {}
        }
    }
}

/// Reads tar members from a stream (Python's `tarfile.open(mode='r|')` and `next()`).
struct TarReader<R> {
    inner: R,
    ignore_zeros: bool,
    global: HashMap<Vec<u8>, Vec<u8>>,
    /// Unread content of the current member (plus its padding).
    pending: u64,
    first: bool,
}

impl<R: Read> TarReader<R> {
    fn next_member(&mut self) -> ImportTarResult<Option<Member>> {
        skip(&mut self.inner, self.pending)?;
        self.pending = 0;
        let mut longname: Option<Vec<u8>> = None;
        let mut longlink: Option<Vec<u8>> = None;
        let mut pax: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        loop {
            let Some(block) = read_block(&mut self.inner)? else {
                if self.first {
                    return Err(ImportTarError::Format("empty file".into()));
                }
                return Ok(None);
            };
            if is_zero(&block) {
                if self.ignore_zeros {
                    continue;
                }
                if self.first {
                    return Err(ImportTarError::Format("empty file".into()));
                }
                return Ok(None);
            }
            let stored = nti(&block[148..156])?;
            let sum: u64 = block
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        u64::from(c)
                    }
                })
                .sum();
            let signed: i64 = block
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        i64::from(c as i8)
                    }
                })
                .sum();
            if stored != sum && stored as i64 != signed {
                return Err(ImportTarError::Format(if self.first {
                    "bad checksum".into()
                } else {
                    "invalid header".into()
                }));
            }
            self.first = false;
            let mut m = Member {
                name: nts(&block[0..100]),
                mode: nti(&block[100..108])? as u32,
                uid: nti(&block[108..116])?,
                gid: nti(&block[116..124])?,
                size: nti(&block[124..136])?,
                mtime: nti(&block[136..148])? as f64,
                typeflag: block[156],
                linkname: nts(&block[157..257]),
                uname: nts(&block[265..297]),
                gname: nts(&block[297..329]),
                devmajor: nti(&block[329..337])?,
                devminor: nti(&block[337..345])?,
            };
            let prefix = nts(&block[345..500]);
            match m.typeflag {
                b'L' => {
                    longname = Some(nts(&read_data(&mut self.inner, m.size)?));
                    continue;
                }
                b'K' => {
                    longlink = Some(nts(&read_data(&mut self.inner, m.size)?));
                    continue;
                }
                b'x' | b'X' => {
                    let data = read_data(&mut self.inner, m.size)?;
                    pax.extend(pax_records(&data)?);
                    continue;
                }
                b'g' => {
                    let data = read_data(&mut self.inner, m.size)?;
                    self.global.extend(pax_records(&data)?);
                    continue;
                }
                _ => {}
            }
            if m.typeflag == 0 && m.name.ends_with(b"/") {
                m.typeflag = b'5';
            }
            let gnu = matches!(m.typeflag, b'L' | b'K' | b'S');
            if m.typeflag == b'5' {
                while m.name.len() > 1 && m.name.ends_with(b"/") {
                    m.name.pop();
                }
            }
            if !prefix.is_empty() && !gnu && &block[257..263] == b"ustar\0" {
                let mut full = prefix;
                full.push(b'/');
                full.extend_from_slice(&m.name);
                m.name = full;
            }
            if let Some(n) = longname {
                m.name = n;
            }
            if let Some(l) = longlink {
                m.linkname = l;
            }
            let mut all = self.global.clone();
            all.extend(pax);
            apply_pax(&mut m, &all);
            if m.typeflag == b'5' {
                while m.name.len() > 1 && m.name.ends_with(b"/") {
                    m.name.pop();
                }
            }
            // Python skips the data of regular files and of unknown types only
            let supported = matches!(m.typeflag, 0 | b'0'..=b'7');
            if is_regular(m.typeflag) || !supported {
                self.pending = padded(m.size);
            }
            return Ok(Some(m));
        }
    }

    /// The content of the member just returned (a regular file), then its padding is skipped.
    fn content(&mut self, size: u64) -> std::io::Take<&mut R> {
        self.pending -= size.min(self.pending);
        (&mut self.inner).take(size)
    }
}

fn is_regular(t: u8) -> bool {
    matches!(t, 0 | b'0' | b'7' | b'S')
}

/// Linux `makedev` (glibc's encoding of major and minor numbers).
fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32)
        | ((major & 0x0000_0fff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0x0000_00ff)
}

/// Imports the tar stream `tar` as archive `name` (borg's `_import_tar`): every member is
/// added in stream order; the archive and manifest entry are written through `store`, which
/// the caller commits.
pub fn import_tar<R: Read>(
    store: &ChunkStore,
    manifest: &mut Manifest,
    name: &str,
    tar: R,
    opts: &ImportTarOptions,
    reporter: &mut dyn Reporter,
) -> ImportTarResult<Created> {
    if manifest.archives.contains_key(name) {
        return Err(CreateError::AlreadyExists(name.to_string()).into());
    }
    let mut writer = ArchiveWriter::new(store.key())?;
    let mut reader = TarReader {
        inner: tar,
        ignore_zeros: opts.ignore_zeros,
        global: HashMap::new(),
        pending: 0,
        first: true,
    };
    while let Some(m) = reader.next_member()? {
        let file_type = match m.typeflag {
            t if is_regular(t) => Some((S_IFREG, 'A')),
            b'5' => Some((S_IFDIR, 'd')),
            b'2' => Some((S_IFLNK, 's')),
            b'1' => Some((S_IFREG, 'h')),
            b'4' => Some((S_IFBLK, 'b')),
            b'3' => Some((S_IFCHR, 'c')),
            b'6' => Some((S_IFIFO, 'f')),
            _ => None,
        };
        let Some((type_bits, status)) = file_type else {
            writer.warnings += 1;
            reporter.warning(&format!(
                "{}: Unsupported tarinfo type {}",
                String::from_utf8_lossy(&m.name),
                String::from_utf8_lossy(&[m.typeflag])
            ));
            reporter.status('E', &m.name);
            continue;
        };
        let mut item = Item::default();
        item.path = make_path_safe(&m.name);
        item.mode = Some(m.mode | type_bits);
        item.uid = Some(m.uid);
        item.gid = Some(m.gid);
        item.user = (!m.uname.is_empty()).then(|| m.uname.clone());
        item.group = (!m.gname.is_empty()).then(|| m.gname.clone());
        item.mtime = Some((m.mtime * 1e9) as i64);
        let mut shown = Some(status);
        match m.typeflag {
            b'1' | b'2' => item.source = Some(m.linkname.clone()),
            b'3' | b'4' => item.rdev = Some(makedev(m.devmajor, m.devminor)),
            t if is_regular(t) => {
                reporter.status(status, &m.name);
                shown = None;
                let params = opts.chunker_params;
                let chunks = writer.add_content(store, reader.content(m.size), &params)?;
                let size: u64 = chunks.iter().map(|c| c.size).sum();
                if size != m.size {
                    return Err(ImportTarError::Format("unexpected end of data".into()));
                }
                item.size = Some(size);
                item.chunks = Some(chunks);
                // borg 1.2.4 counts each regular file twice: once in `_import_tar` and once
                // in `TarfileObjectProcessors.process_file`, whose statistics are then added
                writer.stats.nfiles += 2;
            }
            _ => {}
        }
        writer.add_item(store, &item)?;
        if let Some(s) = shown {
            reporter.status(s, &m.name);
        }
    }
    let mut info = opts.info.clone();
    info.chunker_params = opts.chunker_params;
    Ok(writer.finish(store, manifest, name, &info)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_octal_or_base256() {
        assert_eq!(nti(b"0000644\0").unwrap(), 0o644);
        assert_eq!(nti(b"       \0").unwrap(), 0);
        // GNU base-256: high bit set, big-endian value in the rest
        assert_eq!(nti(&[0x80, 0, 0, 0, 0, 0, 0x01, 0x00]).unwrap(), 256);
        assert!(nti(b"89\0").is_err());
    }

    #[test]
    fn pax_records_are_length_prefixed() {
        let data = b"30 mtime=1700000000.123456789\n19 path=some/where\n";
        let recs = pax_records(data).unwrap();
        assert_eq!(recs[1], (b"path".to_vec(), b"some/where".to_vec()));
        let mut m = Member::default();
        apply_pax(&mut m, &recs.into_iter().collect());
        assert_eq!(m.name, b"some/where");
        assert_eq!((m.mtime * 1e9) as i64 / 1_000_000_000, 1_700_000_000);
        assert!(pax_records(b"99 path=x\n").is_err());
    }

    #[test]
    fn empty_and_zero_streams() {
        let mut r = TarReader {
            inner: &[0u8; 1024][..],
            ignore_zeros: false,
            global: HashMap::new(),
            pending: 0,
            first: true,
        };
        assert!(matches!(r.next_member(), Err(ImportTarError::Format(_))));
        assert_eq!(makedev(8, 1), 0x801);
    }
}
