//! The repository hints file `hints.N` (borg 1.2.4 `repository.py`, `write_index` /
//! `prepare_txn`; `internals/data-structures.rst`, "Hints file").
//!
//! It is a single msgpack map written with borg's legacy packer settings
//! (`use_bin_type=False`: byte strings are msgpack *raw/str* types and never use the
//! `str8` (0xd9) marker; see `helpers/msgpack.py`):
//!
//! ```text
//! version 2: { b'version': 2,
//!              b'segments': {segment: number of live objects},
//!              b'compact':  {segment: freeable bytes},
//!              b'storage_quota_use': bytes,
//!              b'shadow_index': {id: [segments holding a shadowed PUT of id]} }
//! version 1: { b'version': 1, b'segments': {...}, b'compact': [segments] }
//! ```
//!
//! Version 1 only listed the segments worth compacting; borg recomputes their
//! freeable space by scanning them (`_rebuild_sparse`), see
//! [`ParsedHints::v1_compact_segments`].
//!
//! ```
//! use rborg_repository::hints::Hints;
//!
//! let mut hints = Hints::default();
//! hints.segments.insert(1, 3);
//! hints.compact.insert(1, 120);
//! let back = Hints::from_bytes(&hints.to_bytes()).unwrap();
//! assert_eq!(back, hints);
//! ```

use crate::hashindex::ObjectId;
use rmpv::Value;
use std::collections::{BTreeMap, HashMap};

/// Errors while decoding a hints file.
#[derive(Debug, thiserror::Error)]
pub enum HintsError {
    /// Not valid msgpack (borg: `msgpack.UnpackException`).
    #[error("hints: invalid msgpack: {0}")]
    Msgpack(String),
    /// Valid msgpack but not the structure borg writes.
    #[error("hints: invalid structure: {0}")]
    Invalid(String),
    /// A version other than 1 or 2 (borg: `Unknown hints file version`).
    #[error("Unknown hints file version: {0}")]
    UnknownVersion(i64),
}

/// Contents of a hints file (the version 2 model).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// segment -> number of live (non-superseded) PUT entries (`self.segments`).
    pub segments: BTreeMap<u32, u32>,
    /// segment -> bytes that compaction would free (`self.compact`, a `FreeSpace`).
    pub compact: BTreeMap<u32, u32>,
    /// Bytes the repository counts against the storage quota.
    pub storage_quota_use: u64,
    /// id -> segments containing PUTs of this id that were superseded/deleted but
    /// whose deletion is not yet compacted (needed to keep DELETE tags alive).
    pub shadow_index: HashMap<ObjectId, Vec<u32>>,
}

/// A decoded hints file together with its format version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedHints {
    /// The hints (for version 1: `compact` is empty and `storage_quota_use`/`shadow_index`
    /// are defaults, as borg sets them when upgrading).
    pub hints: Hints,
    /// 1 or 2.
    pub version: u32,
    /// Version 1 only: the segments whose freeable space must be recomputed by
    /// scanning them (borg's `_rebuild_sparse`). Empty for version 2.
    pub v1_compact_segments: Vec<u32>,
}

fn key_name(k: &Value) -> Option<&[u8]> {
    match k {
        Value::String(s) => Some(s.as_bytes()),
        Value::Binary(b) => Some(b),
        _ => None,
    }
}

fn as_u32(v: &Value, what: &str) -> Result<u32, HintsError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| HintsError::Invalid(format!("{what}: expected u32, got {v}")))
}

fn u32_map(v: &Value, what: &str) -> Result<BTreeMap<u32, u32>, HintsError> {
    let m = v
        .as_map()
        .ok_or_else(|| HintsError::Invalid(format!("{what}: expected a map")))?;
    m.iter()
        .map(|(k, v)| Ok((as_u32(k, what)?, as_u32(v, what)?)))
        .collect()
}

impl Hints {
    /// Decode a version 1 or 2 hints file (see [`Hints::parse`] for the version).
    pub fn from_bytes(data: &[u8]) -> Result<Self, HintsError> {
        Ok(Self::parse(data)?.hints)
    }

    /// Decode a hints file, reporting its version and the v1 compaction list.
    pub fn parse(data: &[u8]) -> Result<ParsedHints, HintsError> {
        let mut rd = data;
        let value =
            rmpv::decode::read_value(&mut rd).map_err(|e| HintsError::Msgpack(e.to_string()))?;
        let map = value
            .as_map()
            .ok_or_else(|| HintsError::Invalid("top level is not a map".into()))?;
        let field = |name: &str| {
            map.iter()
                .find(|(k, _)| key_name(k) == Some(name.as_bytes()))
                .map(|(_, v)| v)
        };
        let version = field("version")
            .and_then(Value::as_i64)
            .ok_or_else(|| HintsError::Invalid("missing version".into()))?;
        let segments = match field("segments") {
            Some(v) => u32_map(v, "segments")?,
            None => return Err(HintsError::Invalid("missing segments".into())),
        };
        let compact_v =
            field("compact").ok_or_else(|| HintsError::Invalid("missing compact".into()))?;
        match version {
            1 => {
                // v1: compact is a list of segment numbers (borg also accepted a map's keys).
                let mut list: Vec<u32> = match compact_v {
                    Value::Array(a) => a
                        .iter()
                        .map(|s| as_u32(s, "compact"))
                        .collect::<Result<_, _>>()?,
                    Value::Map(m) => m
                        .iter()
                        .map(|(s, _)| as_u32(s, "compact"))
                        .collect::<Result<_, _>>()?,
                    _ => return Err(HintsError::Invalid("compact: expected a list".into())),
                };
                list.sort_unstable();
                Ok(ParsedHints {
                    hints: Hints {
                        segments,
                        ..Hints::default()
                    },
                    version: 1,
                    v1_compact_segments: list,
                })
            }
            2 => {
                let compact = u32_map(compact_v, "compact")?;
                let storage_quota_use = match field("storage_quota_use") {
                    Some(v) => v.as_u64().ok_or_else(|| {
                        HintsError::Invalid("storage_quota_use: expected int".into())
                    })?,
                    None => 0,
                };
                let mut shadow_index = HashMap::new();
                if let Some(v) = field("shadow_index") {
                    let m = v.as_map().ok_or_else(|| {
                        HintsError::Invalid("shadow_index: expected a map".into())
                    })?;
                    for (k, segs) in m {
                        let id: ObjectId =
                            key_name(k).and_then(|b| b.try_into().ok()).ok_or_else(|| {
                                HintsError::Invalid("shadow_index: key is not a 32 byte id".into())
                            })?;
                        let segs = segs
                            .as_array()
                            .ok_or_else(|| {
                                HintsError::Invalid("shadow_index: expected a list".into())
                            })?
                            .iter()
                            .map(|s| as_u32(s, "shadow_index"))
                            .collect::<Result<Vec<_>, _>>()?;
                        shadow_index.insert(id, segs);
                    }
                }
                Ok(ParsedHints {
                    hints: Hints {
                        segments,
                        compact,
                        storage_quota_use,
                        shadow_index,
                    },
                    version: 2,
                    v1_compact_segments: Vec::new(),
                })
            }
            v => Err(HintsError::UnknownVersion(v)),
        }
    }

    /// Encode as a version 2 hints file with borg's packer settings.  Maps are written in
    /// ascending key order (borg uses Python dict insertion order, so bytes can differ
    /// from borg's file for the same content, while the decoded content is identical).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 12 * (self.segments.len() + self.compact.len()));
        write_map_len(&mut out, 5);
        write_raw(&mut out, b"version");
        write_uint(&mut out, 2);
        write_raw(&mut out, b"segments");
        write_map_len(&mut out, self.segments.len());
        for (&k, &v) in &self.segments {
            write_uint(&mut out, k.into());
            write_uint(&mut out, v.into());
        }
        write_raw(&mut out, b"compact");
        write_map_len(&mut out, self.compact.len());
        for (&k, &v) in &self.compact {
            write_uint(&mut out, k.into());
            write_uint(&mut out, v.into());
        }
        write_raw(&mut out, b"storage_quota_use");
        write_uint(&mut out, self.storage_quota_use);
        write_raw(&mut out, b"shadow_index");
        write_map_len(&mut out, self.shadow_index.len());
        let mut ids: Vec<&ObjectId> = self.shadow_index.keys().collect();
        ids.sort_unstable();
        for id in ids {
            write_raw(&mut out, id);
            let segs = &self.shadow_index[id];
            write_array_len(&mut out, segs.len());
            for &s in segs {
                write_uint(&mut out, s.into());
            }
        }
        out
    }
}

/// msgpack unsigned int, smallest encoding (as msgpack-python does).
pub(crate) fn write_uint(out: &mut Vec<u8>, n: u64) {
    if n < 0x80 {
        out.push(n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xcc, n as u8]);
    } else if n <= 0xffff {
        out.push(0xcd);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(0xce);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// msgpack raw bytes as borg's `use_bin_type=False` packer writes them: fixraw, then
/// raw16/raw32 (no str8, which the old spec lacks).
pub(crate) fn write_raw(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

pub(crate) fn write_map_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn write_array_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if n <= 0xffff {
        out.push(0xdc);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_encoding_details() {
        let mut h = Hints::default();
        h.segments.insert(0, 0);
        h.segments.insert(70000, 300);
        h.compact.insert(5, 1 << 20);
        h.storage_quota_use = 1 << 40;
        h.shadow_index.insert([9u8; 32], vec![1, 2, 65536]);
        let b = h.to_bytes();
        // 32 byte id as raw16 (0xda 0x00 0x20), never str8.
        assert!(b.windows(3).any(|w| w == [0xda, 0x00, 0x20]));
        assert!(!b.contains(&0xd9));
        assert_eq!(Hints::from_bytes(&b).unwrap(), h);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Hints::from_bytes(b"").is_err());
        assert!(Hints::from_bytes(&[0xc1]).is_err());
        assert!(matches!(
            Hints::from_bytes(&[0x90]),
            Err(HintsError::Invalid(_))
        ));
    }
}
