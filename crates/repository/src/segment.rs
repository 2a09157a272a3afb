//! Segment files: borg's `LoggedIO` (`borg/repository.py`, see also the "Segments" section of
//! `internals/data-structures.rst`).
//!
//! A repository's log is a series of numbered segment files `data/<N / segments_per_dir>/<N>`.
//! Every segment starts with the 8 byte magic `BORG_SEG`, followed by entries:
//!
//! ```text
//! crc32 (u32 LE) | size (u32 LE, whole entry incl. header) | tag (u8) | [id (32 bytes) | data]
//! ```
//!
//! The crc covers everything after the crc field. `PUT` entries carry id and data, `DELETE`
//! entries only the id and `COMMIT` entries nothing. A segment that ends with a `COMMIT` (and has
//! nothing but further commits after its first commit) is *committed*; its number is the
//! transaction id.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::hashindex::ObjectId;

/// Magic at the start of every borg segment file.
pub const MAGIC: &[u8; 8] = b"BORG_SEG";
/// Magic of segment files of a (not upgraded) Attic repository.
pub const ATTIC_MAGIC: &[u8; 8] = b"ATTICSEG";
/// Length of [`MAGIC`].
pub const MAGIC_LEN: u32 = 8;
/// Tag of a PUT entry.
pub const TAG_PUT: u8 = 0;
/// Tag of a DELETE entry.
pub const TAG_DELETE: u8 = 1;
/// Tag of a COMMIT entry.
pub const TAG_COMMIT: u8 = 2;
/// Highest tag value borg accepts as possibly valid (`MAX_TAG_ID`, used by segment recovery).
pub const MAX_TAG_ID: u8 = 15;
/// Size of the generic entry header `<IIB` (crc, size, tag).
pub const HEADER_SIZE: u32 = 9;
/// Size of the PUT/DELETE header `<IIB32s` (crc, size, tag, id).
pub const PUT_HEADER_SIZE: u32 = 41;
/// Largest data part of a PUT (`constants.MAX_DATA_SIZE`).
pub const MAX_DATA_SIZE: usize = 20_971_479;
/// Largest entry (`constants.MAX_OBJECT_SIZE`, 20 MiB).
pub const MAX_OBJECT_SIZE: u32 = MAX_DATA_SIZE as u32 + PUT_HEADER_SIZE;
/// `max_segment_size` must stay below this so that offsets fit into u32 (`MAX_SEGMENT_SIZE_LIMIT`).
pub const MAX_SEGMENT_SIZE_LIMIT: u64 = (1u64 << 32) - MAX_OBJECT_SIZE as u64;
/// Default `max_segment_size` of new repositories (500 MiB).
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 500 * 1024 * 1024;
/// Default `segments_per_dir` of new repositories.
pub const DEFAULT_SEGMENTS_PER_DIR: u32 = 1000;
/// The id of the manifest object; borg always starts a new segment before writing it.
pub const MANIFEST_ID: ObjectId = [0u8; 32];
/// How many read file handles are cached (borg's `LoggedIO(capacity=90)`).
const FD_CACHE_CAPACITY: usize = 90;

/// A corrupt or unreadable segment entry. borg raises `IntegrityError` for all of these; the
/// messages are borg's (prefixed with "Data integrity error: " by [`crate::Error`]).
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The file does not start with `BORG_SEG`.
    #[error("Invalid segment magic [segment {segment}, offset 0]")]
    BadMagic {
        /// Segment number.
        segment: u32,
    },
    /// The header is truncated.
    #[error("Invalid segment entry header [segment {segment}, offset {offset}]: unpack requires a buffer of {expected} bytes")]
    ShortHeader {
        /// Segment number.
        segment: u32,
        /// Offset of the entry.
        offset: u64,
        /// Header size that was needed.
        expected: u32,
    },
    /// The size field exceeds `MAX_OBJECT_SIZE`.
    #[error("Invalid segment entry size {size} - too big [segment {segment}, offset {offset}]")]
    TooBig {
        /// Claimed entry size.
        size: u32,
        /// Segment number.
        segment: u32,
        /// Offset of the entry.
        offset: u64,
    },
    /// The size field is smaller than the header.
    #[error("Invalid segment entry size {size} - too small [segment {segment}, offset {offset}]")]
    TooSmall {
        /// Claimed entry size.
        size: u32,
        /// Segment number.
        segment: u32,
        /// Offset of the entry.
        offset: u64,
    },
    /// The entry's data is truncated.
    #[error("Segment entry data short read [segment {segment}, offset {offset}]: expected {expected}, got {got} bytes")]
    ShortRead {
        /// Segment number.
        segment: u32,
        /// Offset of the entry.
        offset: u64,
        /// Bytes needed.
        expected: u64,
        /// Bytes available.
        got: u64,
    },
    /// The crc32 does not match.
    #[error("Segment entry checksum mismatch [segment {segment}, offset {offset}]")]
    Checksum {
        /// Segment number.
        segment: u32,
        /// Offset of the entry.
        offset: u64,
    },
    /// The entry at the indexed position belongs to another id.
    #[error(
        "Invalid segment entry header, is not for wanted id [segment {segment}, offset {offset}]"
    )]
    WrongId {
        /// Segment number.
        segment: u32,
        /// Offset of the entry.
        offset: u64,
    },
    /// The tag is not one that is valid at this place.
    #[error("Invalid segment entry header, did not get acceptable tag [segment {segment}, offset {offset}]")]
    BadTag {
        /// Segment number.
        segment: u32,
        /// Offset of the entry.
        offset: u64,
    },
    /// A PUT with more than `MAX_DATA_SIZE` bytes was attempted.
    #[error("More than allowed put data [{0} > {MAX_DATA_SIZE}]")]
    DataTooLarge(usize),
    /// The write segment is full and the caller asked not to roll over (`LoggedIO.SegmentFull`).
    #[error("segment is full")]
    SegmentFull,
    /// An I/O error on one segment file (a failing disk, a full or read-only file system),
    /// with the file and what was being done, so the user knows where to look.
    #[error("{}: {op}: {source}", path.display())]
    File {
        /// The segment file (or segment directory).
        path: PathBuf,
        /// `open`, `read`, `write`, `fsync`, ...
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Wraps an I/O error on `path` into [`SegmentError::File`].
fn file_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> SegmentError + 'a {
    move |source| SegmentError::File {
        path: path.to_path_buf(),
        op,
        source,
    }
}

impl SegmentError {
    /// True if this error means the on-disk data is bad (borg's `IntegrityError`), as opposed to
    /// an I/O failure or a caller error.
    pub fn is_integrity_error(&self) -> bool {
        !matches!(
            self,
            SegmentError::Io(_) | SegmentError::File { .. } | SegmentError::SegmentFull
        )
    }
}

/// One entry found by [`LoggedIO::iter_objects`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentEntry {
    /// `TAG_PUT`, `TAG_DELETE` or `TAG_COMMIT`.
    pub tag: u8,
    /// The object id (all zeros for COMMIT entries).
    pub key: ObjectId,
    /// Offset of the entry in its segment.
    pub offset: u32,
    /// Size of the whole entry including its header.
    pub size: u32,
    /// The PUT data if requested.
    pub data: Option<Vec<u8>>,
}

fn crc_entry(header_no_crc: &[u8], rest: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header_no_crc);
    for part in rest {
        h.update(part);
    }
    h.finalize()
}

/// The bytes of a COMMIT entry (`LoggedIO.COMMIT`).
pub fn commit_entry() -> [u8; 9] {
    let mut hdr = [0u8; 9];
    hdr[4..8].copy_from_slice(&HEADER_SIZE.to_le_bytes());
    hdr[8] = TAG_COMMIT;
    let crc = crc_entry(&hdr[4..], &[]);
    hdr[..4].copy_from_slice(&crc.to_le_bytes());
    hdr
}

/// fsync a directory so that created/renamed/removed entries are durable (borg's `sync_dir`;
/// EINVAL, given by some network file systems, is ignored like borg does).
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    match dir.sync_all() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

/// Unlink `path`; if that fails with ENOSPC, truncate it instead when it has no other hard link
/// (borg's `helpers.fs.safe_unlink`).
pub fn safe_unlink(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
            use std::os::unix::fs::MetadataExt;
            let md = fs::metadata(path)?;
            if md.nlink() > 1 {
                return Err(e);
            }
            match OpenOptions::new().write(true).open(path) {
                Ok(f) => f.set_len(0).map_err(|_| e),
                Err(_) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// The segment currently written (borg's `SyncFile`: created exclusively, data-synced and its
/// directory synced on close).
struct WriteSegment {
    file: BufWriter<File>,
    path: PathBuf,
}

impl WriteSegment {
    fn sync(&mut self) -> Result<(), SegmentError> {
        self.file.flush().map_err(file_err(&self.path, "write"))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(file_err(&self.path, "fsync"))
    }

    fn close(mut self, fsync: bool) -> Result<(), SegmentError> {
        self.file.flush().map_err(file_err(&self.path, "write"))?;
        if fsync {
            self.file
                .get_ref()
                .sync_data()
                .map_err(file_err(&self.path, "fsync"))?;
            if let Some(dir) = self.path.parent() {
                sync_dir(dir).map_err(file_err(dir, "fsync"))?;
            }
        }
        Ok(())
    }
}

/// Reads and writes segment files of one repository (borg's `LoggedIO`).
pub struct LoggedIO {
    path: PathBuf,
    limit: u64,
    segments_per_dir: u32,
    /// Number of the segment that is (or will be) written next.
    pub segment: u32,
    /// Write offset in the current segment.
    pub offset: u64,
    write: Option<WriteSegment>,
    fds: HashMap<u32, (u64, File)>,
    fd_clock: u64,
    fsync: bool,
}

impl LoggedIO {
    /// Segment I/O for the repository at `path` with the config's `max_segment_size` (`limit`)
    /// and `segments_per_dir`.
    pub fn new(path: &Path, limit: u64, segments_per_dir: u32) -> Self {
        LoggedIO {
            path: path.to_path_buf(),
            limit,
            segments_per_dir: segments_per_dir.max(1),
            segment: 0,
            offset: 0,
            write: None,
            fds: HashMap::new(),
            fd_clock: 0,
            fsync: true,
        }
    }

    /// Disable fsync (only for measuring what fsync costs; never for real repositories).
    pub fn set_fsync(&mut self, fsync: bool) {
        self.fsync = fsync;
    }

    /// Close the write segment (syncing it) and forget cached read handles.
    pub fn close(&mut self) -> Result<(), SegmentError> {
        self.close_segment()?;
        self.fds.clear();
        Ok(())
    }

    /// The file name of `segment`: `data/<segment / segments_per_dir>/<segment>`.
    pub fn segment_filename(&self, segment: u32) -> PathBuf {
        self.path
            .join("data")
            .join((segment / self.segments_per_dir).to_string())
            .join(segment.to_string())
    }

    fn numeric_names(dir: &Path) -> io::Result<Vec<u32>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                    if let Ok(n) = name.parse::<u32>() {
                        out.push(n);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Segment numbers and file names from `start` upwards, or downwards when `reverse`, like
    /// borg's `segment_iterator`: directories are listed up front, the files of each directory
    /// only when the iteration reaches it (so finding the newest segment of a repository with
    /// many directories reads one directory). Zero-length files are included (borg treats them
    /// as logically deleted, but cleanup must still see them).
    pub fn segment_iter(
        &self,
        start: Option<u32>,
        reverse: bool,
    ) -> Result<SegmentFiles, SegmentError> {
        let segment = start.unwrap_or(if reverse { u32::MAX } else { 0 });
        let data = self.path.join("data");
        let start_dir = segment / self.segments_per_dir;
        let mut dirs: Vec<u32> = Self::numeric_names(&data)?
            .into_iter()
            .filter(|&d| {
                if reverse {
                    d <= start_dir
                } else {
                    d >= start_dir
                }
            })
            .collect();
        // popped from the end: keep the first directory to visit last in the vector
        dirs.sort_unstable();
        if !reverse {
            dirs.reverse();
        }
        Ok(SegmentFiles {
            data,
            dirs,
            files: Vec::new(),
            dir_path: PathBuf::new(),
            segment,
            reverse,
        })
    }

    /// [`Self::segment_iter`] collected into a vector.
    pub fn segment_list(
        &self,
        start: Option<u32>,
        reverse: bool,
    ) -> Result<Vec<(u32, PathBuf)>, SegmentError> {
        self.segment_iter(start, reverse)?.collect()
    }

    /// The highest segment number present.
    pub fn get_latest_segment(&self) -> Result<Option<u32>, SegmentError> {
        match self.segment_iter(None, true)?.next() {
            Some(r) => Ok(Some(r?.0)),
            None => Ok(None),
        }
    }

    /// The last committed segment, i.e. the transaction id the segments say is current.
    pub fn get_segments_transaction_id(&mut self) -> Result<Option<u32>, SegmentError> {
        for entry in self.segment_iter(None, true)? {
            let (segment, _) = entry?;
            if self.is_committed_segment(segment)? {
                return Ok(Some(segment));
            }
        }
        Ok(None)
    }

    /// Delete all segments newer than `transaction_id` (left over by an aborted transaction) and
    /// continue writing after it.
    pub fn cleanup(&mut self, transaction_id: u32) -> Result<usize, SegmentError> {
        self.close_segment()?;
        self.segment = transaction_id.wrapping_add(1);
        let mut count = 0;
        for entry in self.segment_iter(None, true)? {
            let (segment, _) = entry?;
            if segment > transaction_id {
                self.delete_segment(segment)?;
                count += 1;
            } else {
                break;
            }
        }
        Ok(count)
    }

    /// Whether `segment` ends with a COMMIT and, after its first COMMIT, has nothing but
    /// COMMITs (borg's `is_committed_segment`). Unreadable or corrupt segments are not committed.
    pub fn is_committed_segment(&mut self, segment: u32) -> Result<bool, SegmentError> {
        let name = self.segment_filename(segment);
        let mut f = match File::open(&name) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(file_err(&name, "open")(e)),
        };
        let len = f.metadata().map_err(file_err(&name, "stat"))?.len();
        if len < u64::from(HEADER_SIZE) {
            return Ok(false);
        }
        let mut tail = [0u8; 9];
        (f.seek(SeekFrom::End(-(HEADER_SIZE as i64))))
            .and_then(|_| f.read_exact(&mut tail))
            .map_err(file_err(&name, "read"))?;
        if tail != commit_entry() {
            return Ok(false);
        }
        let mut seen_commit = false;
        let mut it = match self.iter_objects(segment, 0, false, true) {
            Ok(it) => it,
            Err(e) if e.is_integrity_error() => return Ok(false),
            Err(e) => return Err(e),
        };
        loop {
            match it.next() {
                None => break,
                Some(Err(e)) if e.is_integrity_error() => return Ok(false),
                Some(Err(e)) => return Err(e),
                Some(Ok(entry)) => {
                    if entry.tag == TAG_COMMIT {
                        seen_commit = true;
                    } else if seen_commit {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(seen_commit)
    }

    fn get_write_fd(
        &mut self,
        no_new: bool,
        want_new: bool,
        raise_full: bool,
    ) -> Result<&mut WriteSegment, SegmentError> {
        if !no_new && (want_new || (self.offset != 0 && self.offset > self.limit)) {
            if raise_full {
                return Err(SegmentError::SegmentFull);
            }
            self.close_segment()?;
        }
        if self.write.is_none() {
            let name = self.segment_filename(self.segment);
            if let Some(dir) = name.parent() {
                if !dir.exists() {
                    fs::create_dir(dir).map_err(file_err(dir, "mkdir"))?;
                    if self.fsync {
                        sync_dir(&self.path.join("data"))?;
                    }
                }
            }
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&name)
                .map_err(file_err(&name, "open"))?;
            let mut file = BufWriter::with_capacity(1 << 20, file);
            file.write_all(MAGIC).map_err(file_err(&name, "write"))?;
            self.offset = u64::from(MAGIC_LEN);
            self.fds.remove(&self.segment);
            self.write = Some(WriteSegment { file, path: name });
        }
        // the branch above guarantees Some
        self.write.as_mut().ok_or(SegmentError::SegmentFull)
    }

    /// Close the write segment (fsync file and directory) and advance to the next number.
    pub fn close_segment(&mut self) -> Result<(), SegmentError> {
        if let Some(w) = self.write.take() {
            self.segment = self.segment.wrapping_add(1);
            self.offset = 0;
            w.close(self.fsync)?;
        }
        Ok(())
    }

    /// Remove a segment file (missing files are fine).
    pub fn delete_segment(&mut self, segment: u32) -> Result<(), SegmentError> {
        self.fds.remove(&segment);
        match safe_unlink(&self.segment_filename(segment)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a segment file exists and is not empty (an empty one counts as deleted).
    pub fn segment_exists(&self, segment: u32) -> bool {
        fs::metadata(self.segment_filename(segment))
            .map(|m| m.len() > 0)
            .unwrap_or(false)
    }

    /// Size of a segment file.
    pub fn segment_size(&self, segment: u32) -> Result<u64, SegmentError> {
        Ok(fs::metadata(self.segment_filename(segment))?.len())
    }

    /// The first 8 bytes of a segment.
    pub fn get_segment_magic(&mut self, segment: u32) -> Result<Vec<u8>, SegmentError> {
        let name = self.segment_filename(segment);
        let f = File::open(&name).map_err(file_err(&name, "open"))?;
        let mut buf = Vec::with_capacity(8);
        (f.take(8).read_to_end(&mut buf)).map_err(file_err(&name, "read"))?;
        Ok(buf)
    }

    /// [`SegmentError::File`] for segment `segment` (its path is only formatted on error).
    fn file_error(&self, segment: u32, op: &'static str, source: io::Error) -> SegmentError {
        file_err(&self.segment_filename(segment), op)(source)
    }

    fn get_fd(&mut self, segment: u32) -> Result<&File, SegmentError> {
        self.fd_clock += 1;
        let clock = self.fd_clock;
        if !self.fds.contains_key(&segment) {
            if self.fds.len() >= FD_CACHE_CAPACITY {
                if let Some((&oldest, _)) = self.fds.iter().min_by_key(|(_, (t, _))| *t) {
                    self.fds.remove(&oldest);
                }
            }
            let name = self.segment_filename(segment);
            let f = File::open(&name).map_err(file_err(&name, "open"))?;
            self.fds.insert(segment, (clock, f));
        }
        let slot = self
            .fds
            .get_mut(&segment)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        slot.0 = clock;
        Ok(&slot.1)
    }

    /// Iterate over the entries of `segment` from `offset` (0 means: check the magic first).
    /// With `read_data` the crc of every entry is verified; with `include_data` PUT data is
    /// returned too. Errors end the iteration.
    pub fn iter_objects(
        &mut self,
        segment: u32,
        offset: u32,
        include_data: bool,
        read_data: bool,
    ) -> Result<SegmentIter, SegmentError> {
        if self.write.is_some() && segment == self.segment {
            if let Some(w) = self.write.as_mut() {
                w.file.flush().map_err(file_err(&w.path, "write"))?;
            }
        }
        let path = self.segment_filename(segment);
        let file = File::open(&path).map_err(file_err(&path, "open"))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut offset = u64::from(offset);
        if offset == 0 {
            let mut magic = [0u8; 8];
            let n = read_fully(&mut reader, &mut magic).map_err(file_err(&path, "read"))?;
            if n != 8 || &magic != MAGIC {
                return Err(SegmentError::BadMagic { segment });
            }
            offset = u64::from(MAGIC_LEN);
        } else {
            reader
                .seek(SeekFrom::Start(offset))
                .map_err(file_err(&path, "seek"))?;
        }
        Ok(SegmentIter {
            reader,
            path,
            segment,
            offset,
            include_data,
            read_data: read_data || include_data,
            done: false,
        })
    }

    /// Read the PUT of `id` at `segment`/`offset` and return its data, verifying crc and id.
    pub fn read(
        &mut self,
        segment: u32,
        offset: u32,
        id: &ObjectId,
    ) -> Result<Vec<u8>, SegmentError> {
        let (_, data) = self.read_entry(segment, offset, id, true)?;
        Ok(data)
    }

    /// Size of the PUT of `id` at `segment`/`offset` without reading its data
    /// (`read(..., read_data=False)`: no crc check, informational).
    pub fn read_size(
        &mut self,
        segment: u32,
        offset: u32,
        id: &ObjectId,
    ) -> Result<u32, SegmentError> {
        Ok(self.read_entry(segment, offset, id, false)?.0)
    }

    fn read_entry(
        &mut self,
        segment: u32,
        offset: u32,
        id: &ObjectId,
        read_data: bool,
    ) -> Result<(u32, Vec<u8>), SegmentError> {
        if self.write.is_some() && segment == self.segment {
            if let Some(w) = self.write.as_mut() {
                w.file.flush().map_err(file_err(&w.path, "write"))?;
            }
        }
        let fd = self.get_fd(segment)?;
        let off = u64::from(offset);
        let mut header = [0u8; PUT_HEADER_SIZE as usize];
        let n = match pread_fully(fd, &mut header, off) {
            Ok(n) => n,
            Err(e) => return Err(self.file_error(segment, "read", e)),
        };
        if n < header.len() {
            return Err(SegmentError::ShortHeader {
                segment,
                offset: off,
                expected: PUT_HEADER_SIZE,
            });
        }
        let crc = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let tag = header[8];
        check_size(size, PUT_HEADER_SIZE, segment, off)?;
        let length = (size - PUT_HEADER_SIZE) as usize;
        let mut data = Vec::new();
        if read_data {
            data = vec![0u8; length];
            let got = match pread_fully(fd, &mut data, off + u64::from(PUT_HEADER_SIZE)) {
                Ok(got) => got,
                Err(e) => return Err(self.file_error(segment, "read", e)),
            };
            if got != length {
                return Err(SegmentError::ShortRead {
                    segment,
                    offset: off,
                    expected: length as u64,
                    got: got as u64,
                });
            }
            if crc_entry(&header[4..], &[&data]) != crc {
                return Err(SegmentError::Checksum {
                    segment,
                    offset: off,
                });
            }
        } else {
            let file_len = match fd.metadata() {
                Ok(md) => md.len(),
                Err(e) => return Err(self.file_error(segment, "stat", e)),
            };
            let avail = file_len.saturating_sub(off + u64::from(PUT_HEADER_SIZE));
            if avail < length as u64 {
                return Err(SegmentError::ShortRead {
                    segment,
                    offset: off,
                    expected: length as u64,
                    got: avail,
                });
            }
        }
        if tag != TAG_PUT {
            return Err(SegmentError::BadTag {
                segment,
                offset: off,
            });
        }
        if &header[9..41] != id {
            return Err(SegmentError::WrongId {
                segment,
                offset: off,
            });
        }
        Ok((size, data))
    }

    /// Append a PUT of `id`; returns (segment, offset). With `raise_full`, a full segment gives
    /// [`SegmentError::SegmentFull`] instead of rolling over.
    pub fn write_put(
        &mut self,
        id: &ObjectId,
        data: &[u8],
        raise_full: bool,
    ) -> Result<(u32, u32), SegmentError> {
        if data.len() > MAX_DATA_SIZE {
            return Err(SegmentError::DataTooLarge(data.len()));
        }
        let want_new = *id == MANIFEST_ID;
        let size = data.len() as u32 + PUT_HEADER_SIZE;
        let mut hdr = [0u8; 5];
        hdr[..4].copy_from_slice(&size.to_le_bytes());
        hdr[4] = TAG_PUT;
        let crc = crc_entry(&hdr, &[id, data]);
        let w = self.get_write_fd(false, want_new, raise_full)?;
        let written = (w.file.write_all(&crc.to_le_bytes()))
            .and_then(|()| w.file.write_all(&hdr))
            .and_then(|()| w.file.write_all(id))
            .and_then(|()| w.file.write_all(data));
        written.map_err(file_err(&w.path, "write"))?;
        let offset = self.offset;
        self.offset += u64::from(size);
        Ok((self.segment, offset as u32))
    }

    /// Append a DELETE of `id`; returns (segment, entry size).
    pub fn write_delete(
        &mut self,
        id: &ObjectId,
        raise_full: bool,
    ) -> Result<(u32, u32), SegmentError> {
        let want_new = *id == MANIFEST_ID;
        let mut hdr = [0u8; 5];
        hdr[..4].copy_from_slice(&PUT_HEADER_SIZE.to_le_bytes());
        hdr[4] = TAG_DELETE;
        let crc = crc_entry(&hdr, &[id]);
        let w = self.get_write_fd(false, want_new, raise_full)?;
        let written = (w.file.write_all(&crc.to_le_bytes()))
            .and_then(|()| w.file.write_all(&hdr))
            .and_then(|()| w.file.write_all(id));
        written.map_err(file_err(&w.path, "write"))?;
        self.offset += u64::from(PUT_HEADER_SIZE);
        Ok((self.segment, PUT_HEADER_SIZE))
    }

    /// Write a COMMIT and close the segment; returns the committed segment number. A final
    /// commit goes into a new segment; an intermediate one (compaction) into the current segment
    /// after syncing what was written before it.
    pub fn write_commit(&mut self, intermediate: bool) -> Result<u32, SegmentError> {
        let fsync = self.fsync;
        let w = self.get_write_fd(intermediate, !intermediate, false)?;
        if intermediate && fsync {
            w.sync()?;
        }
        w.file
            .write_all(&commit_entry())
            .map_err(file_err(&w.path, "write"))?;
        self.close_segment()?;
        Ok(self.segment.wrapping_sub(1))
    }

    /// Rewrite a damaged segment keeping every entry whose header and crc are valid, skipping
    /// garbage byte by byte (borg's `recover_segment`, used by `check --repair`).
    pub fn recover_segment(&mut self, segment: u32, filename: &Path) -> Result<(), SegmentError> {
        self.fds.remove(&segment);
        let data = fs::read(filename)?;
        let mut out = Vec::with_capacity(data.len());
        out.extend_from_slice(MAGIC);
        if data.len() >= (MAGIC_LEN + HEADER_SIZE) as usize {
            let mut d: &[u8] = &data;
            while d.len() >= HEADER_SIZE as usize {
                let crc = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                let size = u32::from_le_bytes([d[4], d[5], d[6], d[7]]);
                let tag = d[8];
                let bad = size > MAX_OBJECT_SIZE
                    || tag > MAX_TAG_ID
                    || size < HEADER_SIZE
                    || size as usize > d.len()
                    || crc32fast::hash(&d[4..size as usize]) != crc;
                if bad {
                    d = &d[1..];
                    continue;
                }
                out.extend_from_slice(&d[..size as usize]);
                d = &d[size as usize..];
            }
        }
        save_file(filename, &out)?;
        Ok(())
    }
}

impl Drop for LoggedIO {
    fn drop(&mut self) {
        let _ = self.close_segment();
    }
}

/// Atomically replace `path` with `data`: temp file in the same directory, fsync, rename, fsync
/// the directory (borg's `SaveFile`).
pub fn save_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{}-{:08x}.tmp", base, rand::random::<u32>()));
    let res = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res?;
    sync_dir(dir)
}

fn check_size(size: u32, header: u32, segment: u32, offset: u64) -> Result<(), SegmentError> {
    if size > MAX_OBJECT_SIZE {
        return Err(SegmentError::TooBig {
            size,
            segment,
            offset,
        });
    }
    if size < header {
        return Err(SegmentError::TooSmall {
            size,
            segment,
            offset,
        });
    }
    Ok(())
}

fn read_fully<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn pread_fully(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Lazy listing of segment files (see [`LoggedIO::segment_iter`]).
pub struct SegmentFiles {
    data: PathBuf,
    /// directories still to visit, next one last
    dirs: Vec<u32>,
    /// files of the current directory still to yield, next one last
    files: Vec<u32>,
    dir_path: PathBuf,
    segment: u32,
    reverse: bool,
}

impl Iterator for SegmentFiles {
    type Item = Result<(u32, PathBuf), SegmentError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(f) = self.files.pop() {
                return Some(Ok((f, self.dir_path.join(f.to_string()))));
            }
            let dir = self.dirs.pop()?;
            self.dir_path = self.data.join(dir.to_string());
            let mut files = match LoggedIO::numeric_names(&self.dir_path) {
                Ok(f) => f,
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Some(Err(e.into())),
            };
            let (segment, reverse) = (self.segment, self.reverse);
            files.retain(|&f| if reverse { f <= segment } else { f >= segment });
            files.sort_unstable();
            if !reverse {
                files.reverse();
            }
            self.files = files;
        }
    }
}

/// Iterator over the entries of one segment (see [`LoggedIO::iter_objects`]).
pub struct SegmentIter {
    reader: BufReader<File>,
    path: PathBuf,
    segment: u32,
    offset: u64,
    include_data: bool,
    read_data: bool,
    done: bool,
}

impl SegmentIter {
    fn next_entry(&mut self) -> Result<Option<SegmentEntry>, SegmentError> {
        self.read_entry().map_err(|e| match e {
            SegmentError::Io(source) => file_err(&self.path, "read")(source),
            other => other,
        })
    }

    fn read_entry(&mut self) -> Result<Option<SegmentEntry>, SegmentError> {
        let segment = self.segment;
        let offset = self.offset;
        let mut header = [0u8; HEADER_SIZE as usize];
        let n = read_fully(&mut self.reader, &mut header)?;
        if n == 0 {
            return Ok(None);
        }
        if n < header.len() {
            return Err(SegmentError::ShortHeader {
                segment,
                offset,
                expected: HEADER_SIZE,
            });
        }
        let crc = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let tag = header[8];
        check_size(size, HEADER_SIZE, segment, offset)?;
        let length = (size - HEADER_SIZE) as usize;
        let mut key = [0u8; 32];
        let mut data = None;
        if self.read_data {
            let mut body = vec![0u8; length];
            let got = read_fully(&mut self.reader, &mut body)?;
            if got != length {
                return Err(SegmentError::ShortRead {
                    segment,
                    offset,
                    expected: length as u64,
                    got: got as u64,
                });
            }
            if crc_entry(&header[4..], &[&body]) != crc {
                return Err(SegmentError::Checksum { segment, offset });
            }
            if tag == TAG_PUT || tag == TAG_DELETE {
                if body.len() < 32 {
                    // borg would slice a short key here; the entry is unusable either way
                    return Err(SegmentError::TooSmall {
                        size,
                        segment,
                        offset,
                    });
                }
                key.copy_from_slice(&body[..32]);
                if self.include_data {
                    body.drain(..32);
                    data = Some(body);
                }
            }
        } else {
            let mut rest = length as u64;
            if tag == TAG_PUT || tag == TAG_DELETE {
                let got = read_fully(&mut self.reader, &mut key)?;
                if got != 32 {
                    return Err(SegmentError::ShortRead {
                        segment,
                        offset,
                        expected: 32,
                        got: got as u64,
                    });
                }
                rest = rest.saturating_sub(32);
            }
            let pos = self.reader.stream_position()?;
            let end = self.reader.get_ref().metadata()?.len();
            if pos + rest > end {
                return Err(SegmentError::ShortRead {
                    segment,
                    offset,
                    expected: rest,
                    got: end.saturating_sub(pos),
                });
            }
            self.reader.seek_relative(rest as i64)?;
        }
        if tag > TAG_COMMIT {
            return Err(SegmentError::BadTag { segment, offset });
        }
        self.offset += u64::from(size);
        Ok(Some(SegmentEntry {
            tag,
            key,
            offset: offset as u32,
            size,
            data,
        }))
    }
}

impl Iterator for SegmentIter {
    type Item = Result<SegmentEntry, SegmentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(dir: &Path, limit: u64) -> LoggedIO {
        fs::create_dir_all(dir.join("data")).unwrap();
        LoggedIO::new(dir, limit, 3)
    }

    #[test]
    fn commit_entry_matches_borg_constant() {
        // borg: COMMIT = crc32(pack('<IB', 9, 2)) + pack('<IB', 9, 2)
        let c = commit_entry();
        assert_eq!(&c[4..], &[9, 0, 0, 0, 2]);
        assert_eq!(
            u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            crc32fast::hash(&[9, 0, 0, 0, 2])
        );
        assert_eq!(c.len(), 9);
    }

    #[test]
    fn put_delete_commit_roundtrip_and_rollover() {
        let tmp = tempfile::tempdir().unwrap();
        let mut io = io(tmp.path(), 100);
        let a = [1u8; 32];
        let b = [2u8; 32];
        let (s1, o1) = io.write_put(&a, b"hello", false).unwrap();
        assert_eq!((s1, o1), (0, 8));
        let (s2, o2) = io.write_put(&b, &[7u8; 80], false).unwrap();
        assert_eq!((s2, o2), (0, 8 + 41 + 5));
        // offset now > 100 -> next write rolls over
        assert!(matches!(
            io.write_put(&a, b"x", true),
            Err(SegmentError::SegmentFull)
        ));
        let (s3, o3) = io.write_delete(&a, false).unwrap();
        assert_eq!((s3, o3), (1, 41));
        assert_eq!(io.write_commit(false).unwrap(), 2);
        assert_eq!(io.read(0, 8, &a).unwrap(), b"hello");
        assert_eq!(io.read_size(0, 54, &b).unwrap(), 121);
        assert!(matches!(
            io.read(0, 8, &b),
            Err(SegmentError::WrongId { .. })
        ));
        assert!(io.is_committed_segment(2).unwrap());
        assert!(!io.is_committed_segment(1).unwrap());
        assert_eq!(io.get_segments_transaction_id().unwrap(), Some(2));
        let entries: Vec<_> = io
            .iter_objects(0, 0, true, true)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].data.as_deref(), Some(&[7u8; 80][..]));
        // segments_per_dir = 3: segment 2 lives in data/0, segment 3 in data/1
        io.write_put(&a, b"y", false).unwrap();
        io.close_segment().unwrap();
        assert!(tmp.path().join("data/1/3").exists());
        let list: Vec<u32> = io
            .segment_list(None, false)
            .unwrap()
            .iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(list, vec![0, 1, 2, 3]);
        assert_eq!(io.cleanup(2).unwrap(), 1);
        assert!(!tmp.path().join("data/1/3").exists());
        assert_eq!(io.segment, 3);
    }

    #[test]
    fn corruption_is_a_typed_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut io = io(tmp.path(), 1 << 20);
        let a = [1u8; 32];
        io.write_put(&a, &[5u8; 100], false).unwrap();
        io.write_commit(true).unwrap();
        let name = io.segment_filename(0);
        let mut bytes = fs::read(&name).unwrap();
        bytes[60] ^= 1;
        fs::write(&name, &bytes).unwrap();
        let mut io = LoggedIO::new(tmp.path(), 1 << 20, 3);
        assert!(matches!(
            io.read(0, 8, &a),
            Err(SegmentError::Checksum { .. })
        ));
        let r: Vec<_> = io.iter_objects(0, 0, false, true).unwrap().collect();
        assert!(matches!(r[0], Err(SegmentError::Checksum { .. })));
        assert!(!io.is_committed_segment(0).unwrap());
        // truncated tail
        fs::write(&name, &bytes[..70]).unwrap();
        let r: Vec<_> = io.iter_objects(0, 0, false, false).unwrap().collect();
        assert!(matches!(r[0], Err(SegmentError::ShortRead { .. })));
        // garbage size
        let mut g = bytes.clone();
        g[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        fs::write(&name, &g).unwrap();
        let r: Vec<_> = io.iter_objects(0, 0, false, false).unwrap().collect();
        assert!(matches!(r[0], Err(SegmentError::TooBig { .. })));
        fs::write(&name, b"NOTMAGIC").unwrap();
        assert!(matches!(
            io.iter_objects(0, 0, false, false),
            Err(SegmentError::BadMagic { .. })
        ));
        // recovery keeps the valid entries only
        let mut rec = bytes[..8].to_vec();
        rec.extend_from_slice(b"garbage!");
        rec.extend_from_slice(&{
            let mut ok = fs::read(&name).unwrap();
            ok.clear();
            ok
        });
        let mut io2 = LoggedIO::new(tmp.path(), 1 << 20, 3);
        let b = [3u8; 32];
        fs::remove_file(&name).unwrap();
        io2.segment = 0;
        io2.write_put(&b, b"good", false).unwrap();
        io2.write_commit(true).unwrap();
        let good = fs::read(&name).unwrap();
        let mut damaged = good[..8].to_vec();
        damaged.extend_from_slice(b"garbage!");
        damaged.extend_from_slice(&good[8..]);
        fs::write(&name, &damaged).unwrap();
        io2.recover_segment(0, &name).unwrap();
        assert_eq!(fs::read(&name).unwrap(), good);
        drop(rec);
    }
}
