//! The per-transaction auxiliary files of a repository: `index.N`, `hints.N` and
//! `integrity.N` (borg 1.2.4 `repository.py`: `write_index`, `open_index`,
//! `prepare_txn`, `_read_integrity`, `get_index_transaction_id`;
//! `crypto/file_integrity.py`: `IntegrityCheckedFile`; `internals/data-structures.rst`,
//! "Index, hints and integrity").
//!
//! `integrity.N` is a msgpack map `{b'version': 2, b'hints': json, b'index': json}` whose
//! JSON strings are `{"algorithm": "XXH64", "digests": {part: hexdigest, ...}}`.  The
//! digests come from one streaming XXH64 (seed 0) over:
//!
//! ```text
//! "%10d" % len(basename) + basename          (e.g. "   7index.5" -> binds the file name)
//! file bytes of the part
//! "%10d" % len(partname) + partname + str(file position after the part)
//! ```
//!
//! with the hash state carried from one part to the next.  `index.N` has the parts
//! `HashHeader` (after the 18 header bytes) and `final` (after the buckets, position =
//! file length); `hints.N` only has `final`.  A missing `integrity.N` (or an unknown
//! version / algorithm) means "nothing to verify", exactly as in borg.
//!
//! ```no_run
//! use rborg_repository::{hashindex::NsIndex, hints::Hints, index_files};
//! # fn main() -> Result<(), index_files::IndexFileError> {
//! let repo = std::path::Path::new("/path/to/repo");
//! index_files::save(repo, 7, &NsIndex::new(), &Hints::default())?;
//! assert_eq!(index_files::latest_transaction_id(repo)?, Some(7));
//! let index = index_files::load_index(repo, 7)?;
//! # Ok(()) }
//! ```

use crate::hashindex::{BucketValue, HashIndexError, NsEntry, NsIndex, HEADER_SIZE, KEY_SIZE};
use crate::hints::{write_map_len, write_raw, write_uint, Hints, HintsError, ParsedHints};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh64::Xxh64;

/// Errors reading or writing the transaction files.
#[derive(Debug, thiserror::Error)]
pub enum IndexFileError {
    /// The file does not exist (borg: `FileNotFoundError`).
    #[error("{0}: file not found")]
    Missing(PathBuf),
    /// Digest mismatch or unusable integrity data (borg: `FileIntegrityError`).
    #[error("File failed integrity check: {path}")]
    IntegrityMismatch {
        /// file that failed verification
        path: PathBuf,
        /// what did not match
        detail: String,
    },
    /// The file verified (or had no digests) but its content is invalid
    /// (borg: `ValueError` from `NSIndex.read` / msgpack errors).
    #[error("{path}: {message}")]
    Corrupt {
        /// offending file
        path: PathBuf,
        /// decoder error
        message: String,
    },
    /// Any other I/O error.
    #[error("{path}: {source}")]
    Io {
        /// file or directory involved
        path: PathBuf,
        /// underlying error
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> IndexFileError + '_ {
    move |source| {
        if source.kind() == io::ErrorKind::NotFound {
            IndexFileError::Missing(path.to_path_buf())
        } else {
            IndexFileError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// Streaming digest state of borg's `IntegrityCheckedFile` with the XXH64 algorithm.
#[derive(Clone)]
pub struct IntegrityHasher {
    hasher: Xxh64,
    digests: BTreeMap<String, String>,
    order: Vec<String>,
}

impl IntegrityHasher {
    /// Start hashing a file whose base name is `filename` (e.g. `index.5`; for
    /// `.tmp` files borg passes the final name).
    pub fn new(filename: &str) -> Self {
        let mut hasher = Xxh64::new(0);
        hasher.update(format!("{:10}", filename.len()).as_bytes());
        hasher.update(filename.as_bytes());
        IntegrityHasher {
            hasher,
            digests: BTreeMap::new(),
            order: Vec::new(),
        }
    }

    /// Feed file content.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// Close a part (`hash_part`); `position` is the file offset after the part
    /// (for `final`: the file length).  Returns the hex digest.
    pub fn hash_part(&mut self, part: &str, position: u64) -> String {
        self.hasher.update(format!("{:10}", part.len()).as_bytes());
        self.hasher.update(part.as_bytes());
        self.hasher.update(position.to_string().as_bytes());
        let digest = format!("{:016x}", self.hasher.digest());
        if self
            .digests
            .insert(part.to_string(), digest.clone())
            .is_none()
        {
            self.order.push(part.to_string());
        }
        digest
    }

    /// The JSON integrity data as Python's `json.dumps` writes it (parts in the order
    /// they were hashed).
    pub fn integrity_json(&self) -> String {
        let parts: Vec<String> = self
            .order
            .iter()
            .map(|p| format!("{}: {}", json_str(p), json_str(&self.digests[p])))
            .collect();
        format!(
            "{{\"algorithm\": \"XXH64\", \"digests\": {{{}}}}}",
            parts.join(", ")
        )
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Expected digests of one file, from `integrity.N`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedDigests(pub BTreeMap<String, String>);

struct Verifier<'a> {
    path: &'a Path,
    hasher: IntegrityHasher,
    expected: Option<ExpectedDigests>,
}

impl Verifier<'_> {
    fn part(&mut self, part: &str, position: u64) -> Result<(), IndexFileError> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        let got = self.hasher.hash_part(part, position);
        let want = expected.0.get(part).map(String::as_str).unwrap_or("");
        if got != want {
            return Err(IndexFileError::IntegrityMismatch {
                path: self.path.to_path_buf(),
                detail: format!("{part} digest {got} != expected {want:?}"),
            });
        }
        Ok(())
    }
}

/// Parse integrity JSON like `IntegrityCheckedFile.parse_integrity_data`: `Ok(None)`
/// for an algorithm rborg cannot verify (borg: warning, no verification).
pub fn parse_integrity_json(
    path: &Path,
    json: &str,
) -> Result<Option<ExpectedDigests>, IndexFileError> {
    let bad = |detail: String| IndexFileError::IntegrityMismatch {
        path: path.to_path_buf(),
        detail,
    };
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(format!("integrity data: {e}")))?;
    let algorithm = v
        .get("algorithm")
        .and_then(|a| a.as_str())
        .ok_or_else(|| bad("no algorithm".into()))?;
    if algorithm != "XXH64" {
        // borg also knows SHA512, but never uses it for repository files.
        return Ok(None);
    }
    let digests = v
        .get("digests")
        .and_then(|d| d.as_object())
        .ok_or_else(|| bad("no digests".into()))?;
    let mut map = BTreeMap::new();
    for (k, d) in digests {
        map.insert(
            k.clone(),
            d.as_str()
                .ok_or_else(|| bad(format!("digest {k} is not a string")))?
                .to_string(),
        );
    }
    if !map.contains_key("final") {
        return Err(bad("no final digest".into()));
    }
    Ok(Some(ExpectedDigests(map)))
}

/// `_read_integrity`: the expected digests for `key` (`"index"` or `"hints"`) of
/// transaction `transaction_id`, or `None` if there is nothing to verify.
pub fn read_integrity(
    repo_dir: &Path,
    transaction_id: u32,
    key: &str,
) -> Result<Option<ExpectedDigests>, IndexFileError> {
    let path = repo_dir.join(format!("integrity.{transaction_id}"));
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(IndexFileError::Io { path, source }),
    };
    let bad = |detail: String| IndexFileError::IntegrityMismatch {
        path: path.clone(),
        detail,
    };
    let value =
        rmpv::decode::read_value(&mut &data[..]).map_err(|e| bad(format!("msgpack: {e}")))?;
    let map = value.as_map().ok_or_else(|| bad("not a map".into()))?;
    let get = |name: &str| {
        map.iter()
            .find(|(k, _)| match k {
                rmpv::Value::String(s) => s.as_bytes() == name.as_bytes(),
                rmpv::Value::Binary(b) => b == name.as_bytes(),
                _ => false,
            })
            .map(|(_, v)| v)
    };
    if get("version").and_then(|v| v.as_i64()) != Some(2) {
        return Ok(None);
    }
    let json = match get(key) {
        Some(rmpv::Value::String(s)) => s.as_bytes().to_vec(),
        Some(rmpv::Value::Binary(b)) => b.clone(),
        _ => return Err(bad(format!("no {key} entry"))),
    };
    let json = String::from_utf8(json).map_err(|_| bad("integrity data is not UTF-8".into()))?;
    parse_integrity_json(&repo_dir.join(format!("{key}.{transaction_id}")), &json)
}

fn read_exact_or_short(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = f.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// `open_index`: load `index.N`, verifying it against `integrity.N` when present.
pub fn load_index(repo_dir: &Path, transaction_id: u32) -> Result<NsIndex, IndexFileError> {
    let name = format!("index.{transaction_id}");
    let path = repo_dir.join(&name);
    let expected = read_integrity(repo_dir, transaction_id, "index")?;
    let mut f = File::open(&path).map_err(io_err(&path))?;
    let len = f.metadata().map_err(io_err(&path))?.len();
    let mut v = Verifier {
        path: &path,
        hasher: IntegrityHasher::new(&name),
        expected,
    };
    let mut header = [0u8; HEADER_SIZE];
    let n = read_exact_or_short(&mut f, &mut header).map_err(io_err(&path))?;
    let corrupt = |e: HashIndexError| IndexFileError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    };
    if n < HEADER_SIZE {
        return Err(corrupt(HashIndexError::TruncatedHeader(n)));
    }
    v.hasher.update(&header);
    v.part("HashHeader", HEADER_SIZE as u64)?;
    // Validate the header before allocating the bucket array.
    let (_, num_buckets) = NsIndex::parse_header(&header).map_err(corrupt)?;
    let want = HEADER_SIZE as u64 + num_buckets as u64 * (KEY_SIZE + NsEntry::SIZE) as u64;
    if len != want {
        return Err(corrupt(HashIndexError::BadLength {
            expected: want,
            got: len,
        }));
    }
    let mut buckets = Vec::with_capacity((len - HEADER_SIZE as u64) as usize);
    f.read_to_end(&mut buckets).map_err(io_err(&path))?;
    v.hasher.update(&buckets);
    v.part("final", HEADER_SIZE as u64 + buckets.len() as u64)?;
    NsIndex::from_header_and_buckets(&header, buckets).map_err(corrupt)
}

/// Load `hints.N` (verified against `integrity.N` when present) with its version.
/// As borg's `prepare_txn`, segments newer than `transaction_id` (uncommitted) are
/// dropped from the shadow index.
pub fn load_hints_parsed(
    repo_dir: &Path,
    transaction_id: u32,
) -> Result<ParsedHints, IndexFileError> {
    let name = format!("hints.{transaction_id}");
    let path = repo_dir.join(&name);
    let expected = read_integrity(repo_dir, transaction_id, "hints")?;
    let data = fs::read(&path).map_err(io_err(&path))?;
    let mut v = Verifier {
        path: &path,
        hasher: IntegrityHasher::new(&name),
        expected,
    };
    v.hasher.update(&data);
    v.part("final", data.len() as u64)?;
    let mut parsed = Hints::parse(&data).map_err(|e: HintsError| IndexFileError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    for segs in parsed.hints.shadow_index.values_mut() {
        segs.retain(|&s| s <= transaction_id);
    }
    Ok(parsed)
}

/// Load `hints.N`, see [`load_hints_parsed`] (a version 1 file yields empty
/// `compact`; use `load_hints_parsed` to get the segments borg rescans).
pub fn load_hints(repo_dir: &Path, transaction_id: u32) -> Result<Hints, IndexFileError> {
    Ok(load_hints_parsed(repo_dir, transaction_id)?.hints)
}

/// `get_index_transaction_id`: the highest N of a non-empty `index.N` file.
pub fn latest_transaction_id(repo_dir: &Path) -> Result<Option<u32>, IndexFileError> {
    let mut best = None;
    for entry in fs::read_dir(repo_dir).map_err(io_err(repo_dir))? {
        let entry = entry.map_err(io_err(repo_dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name.strip_prefix("index.") else {
            continue;
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(n) = num.parse::<u32>() else { continue };
        let meta = entry.metadata().map_err(io_err(&entry.path()))?;
        if meta.len() == 0 {
            continue;
        }
        best = best.max(Some(n));
    }
    Ok(best)
}

fn write_synced(path: &Path, parts: &[&[u8]]) -> Result<(), IndexFileError> {
    let mut f = File::create(path).map_err(io_err(path))?;
    for p in parts {
        f.write_all(p).map_err(io_err(path))?;
    }
    f.sync_all().map_err(io_err(path))
}

/// fsync a directory so renames in it are durable (borg's `platform.sync_dir`).
pub fn sync_dir(dir: &Path) -> Result<(), IndexFileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The exact `integrity.N` bytes borg writes for the given JSON strings.
pub fn integrity_file_bytes(hints_json: &str, index_json: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_map_len(&mut out, 3);
    write_raw(&mut out, b"version");
    write_uint(&mut out, 2);
    write_raw(&mut out, b"hints");
    write_raw(&mut out, hints_json.as_bytes());
    write_raw(&mut out, b"index");
    write_raw(&mut out, index_json.as_bytes());
    out
}

/// `write_index`: write `hints.N`, `index.N` and `integrity.N` for transaction
/// `transaction_id` atomically (tmp file + fsync + rename, `integrity.N` renamed first,
/// directory fsynced), then delete all other `index.*`, `hints.*`, `integrity.*` files.
/// (The append-only `transactions` log line is the caller's business.)
pub fn save(
    repo_dir: &Path,
    transaction_id: u32,
    index: &NsIndex,
    hints: &Hints,
) -> Result<(), IndexFileError> {
    let hints_name = format!("hints.{transaction_id}");
    let index_name = format!("index.{transaction_id}");
    let integrity_name = format!("integrity.{transaction_id}");
    let tmp = |name: &str| repo_dir.join(format!("{name}.tmp"));

    let hints_bytes = hints.to_bytes();
    let mut h = IntegrityHasher::new(&hints_name);
    h.update(&hints_bytes);
    h.hash_part("final", hints_bytes.len() as u64);
    write_synced(&tmp(&hints_name), &[&hints_bytes])?;
    let hints_json = h.integrity_json();

    let header = index.header_bytes();
    let buckets = index.bucket_bytes();
    let mut h = IntegrityHasher::new(&index_name);
    h.update(&header);
    h.hash_part("HashHeader", HEADER_SIZE as u64);
    h.update(buckets);
    h.hash_part("final", (HEADER_SIZE + buckets.len()) as u64);
    write_synced(&tmp(&index_name), &[&header, buckets])?;
    let index_json = h.integrity_json();

    write_synced(
        &tmp(&integrity_name),
        &[&integrity_file_bytes(&hints_json, &index_json)],
    )?;

    let rename = |name: &str| {
        let dst = repo_dir.join(name);
        fs::rename(tmp(name), &dst).map_err(io_err(&dst))
    };
    rename(&integrity_name)?;
    sync_dir(repo_dir)?;
    rename(&hints_name)?;
    rename(&index_name)?;
    sync_dir(repo_dir)?;

    let current = format!(".{transaction_id}");
    for entry in fs::read_dir(repo_dir).map_err(io_err(repo_dir))? {
        let entry = entry.map_err(io_err(repo_dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with("index.")
            || name.starts_with("hints.")
            || name.starts_with("integrity."))
        {
            continue;
        }
        if name.ends_with(&current) {
            continue;
        }
        let p = entry.path();
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(IndexFileError::Io { path: p, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_python_dumps() {
        let mut h = IntegrityHasher::new("index.1");
        h.hash_part("HashHeader", 18);
        h.hash_part("final", 18);
        let j = h.integrity_json();
        assert!(j.starts_with("{\"algorithm\": \"XXH64\", \"digests\": {\"HashHeader\": \""));
        assert!(parse_integrity_json(Path::new("x"), &j).unwrap().is_some());
    }
}
