//! Segment compaction (borg 1.2.4 `Repository.compact_segments`, "Compaction" in
//! `internals/data-structures.rst`): sparse segments whose freeable space exceeds the
//! threshold are rewritten; current PUTs are copied to new segments, superseded PUTs dropped,
//! and DELETEs kept only while an older PUT of the same id may still exist (shadow index) or
//! while they are not yet covered by a written index.

use crate::hashindex::{NsEntry, NsIndex};
use crate::local::{add, LocalRepository};
use crate::segment::{SegmentError, HEADER_SIZE, PUT_HEADER_SIZE, TAG_COMMIT, TAG_DELETE, TAG_PUT};
use crate::{Error, Result};

impl LocalRepository {
    /// Commit what was copied so far and delete the segments it came from (`complete_xfer`).
    fn complete_xfer(&mut self, unused: &mut Vec<u32>, intermediate: bool) -> Result<()> {
        let segment = self.io.write_commit(intermediate)?;
        self.segments.entry(segment).or_insert(0);
        add(self.compact.entry(segment).or_insert(0), HEADER_SIZE);
        for seg in unused.drain(..) {
            let count = self.segments.remove(&seg).unwrap_or(0);
            if count != 0 {
                return Err(Error::CheckNeeded(format!(
                    "{} (Corrupted segment reference count - corrupted index or hints)",
                    self.path.display()
                )));
            }
            self.io.delete_segment(seg)?;
            self.compact.remove(&seg);
        }
        Ok(())
    }

    /// Compact all segments whose freeable ratio is above `threshold`.
    pub(crate) fn compact_segments(&mut self, threshold: f64) -> Result<()> {
        if self.compact.is_empty() {
            return Ok(());
        }
        let index_transaction_id = self.get_index_transaction_id()?;
        let mut unused: Vec<u32> = Vec::new();
        let candidates: Vec<(u32, u32)> = self.compact.iter().map(|(&s, &f)| (s, f)).collect();
        for (segment, freeable_space) in candidates {
            if !self.io.segment_exists(segment) {
                self.compact.remove(&segment);
                continue;
            }
            let segment_size = self.io.segment_size(segment)?;
            let freeable_ratio = f64::from(freeable_space) / segment_size as f64;
            if freeable_ratio.is_nan() || freeable_ratio <= threshold {
                continue;
            }
            self.segments.entry(segment).or_insert(0);
            let iter = self.io.iter_objects(segment, 0, true, true)?;
            for entry in iter {
                let entry = entry?;
                if entry.tag == TAG_COMMIT {
                    continue;
                }
                let key = entry.key;
                let in_index = self.index.as_mut().and_then(|i| i.get_borg(&key));
                let is_index_object = in_index
                    == Some(NsEntry {
                        segment,
                        offset: entry.offset,
                    });
                if entry.tag == TAG_PUT && is_index_object {
                    let data = entry.data.as_deref().unwrap_or(&[]);
                    let (new_segment, offset) = match self.io.write_put(&key, data, true) {
                        Err(SegmentError::SegmentFull) => {
                            self.complete_xfer(&mut unused, true)?;
                            self.io.write_put(&key, data, false)?
                        }
                        other => other?,
                    };
                    self.index.get_or_insert_with(NsIndex::new).try_insert(
                        key,
                        NsEntry {
                            segment: new_segment,
                            offset,
                        },
                    )?;
                    add(self.segments.entry(new_segment).or_insert(0), 1);
                    if let Some(c) = self.segments.get_mut(&segment) {
                        *c = c.saturating_sub(1);
                    }
                } else if entry.tag == TAG_PUT {
                    // superseded PUT: it disappears with this segment
                    if let Some(list) = self.shadow_index.get_mut(&key) {
                        if let Some(pos) = list.iter().position(|&s| s == segment) {
                            list.remove(pos);
                        }
                    }
                    let len = entry.data.as_ref().map_or(0, |d| d.len()) as u64;
                    self.storage_quota_use = self
                        .storage_quota_use
                        .saturating_sub(len + u64::from(PUT_HEADER_SIZE));
                } else if entry.tag == TAG_DELETE && in_index.is_none() {
                    let key_not_in_shadow_index = !self.shadow_index.contains_key(&key);
                    let shadowed_put_exists = key_not_in_shadow_index
                        || self
                            .shadow_index
                            .get(&key)
                            .is_some_and(|l| l.iter().any(|&s| s < segment));
                    let delete_is_not_stable = index_transaction_id.is_none_or(|t| segment > t);
                    if shadowed_put_exists || delete_is_not_stable {
                        // keep the DELETE (see borg's long comment: avoids un-deleting objects
                        // if a crash reorders the deletion of old segments)
                        let (new_segment, size) = match self.io.write_delete(&key, true) {
                            Err(SegmentError::SegmentFull) => {
                                self.complete_xfer(&mut unused, true)?;
                                self.io.write_delete(&key, false)?
                            }
                            other => other?,
                        };
                        add(self.compact.entry(new_segment).or_insert(0), size);
                        self.segments.entry(new_segment).or_insert(0);
                    } else if self.shadow_index.get(&key).is_some_and(|l| l.is_empty()) {
                        // the DELETE is dropped; forget the id's (now empty) shadow list
                        self.shadow_index.remove(&key);
                    }
                }
            }
            if self.segments.get(&segment).copied().unwrap_or(0) != 0 {
                return Err(Error::CheckNeeded(format!(
                    "{} (Corrupted segment reference count - corrupted index or hints)",
                    self.path.display()
                )));
            }
            unused.push(segment);
        }
        self.complete_xfer(&mut unused, false)?;
        Ok(())
    }
}
