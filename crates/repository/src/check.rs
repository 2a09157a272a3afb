//! Repository consistency check (borg 1.2.4 `Repository.check`): verify every entry's crc in all
//! committed segments, rebuild the index from them and compare it with the committed index;
//! with `repair`, salvage damaged segments (`recover_segment`), add a missing commit tag and
//! write the rebuilt index.

use crate::error::Error;
use crate::hashindex::NsIndex;
use crate::local::{CheckReport, LocalRepository};
use crate::Result;
use std::time::{Duration, Instant};

impl LocalRepository {
    pub(crate) fn check_impl(
        &mut self,
        repair: bool,
        max_duration: Option<Duration>,
    ) -> Result<CheckReport> {
        if self.append_only && repair {
            return Err(Error::AppendOnly(self.path.display().to_string()));
        }
        let partial = max_duration.is_some_and(|d| !d.is_zero());
        if repair && partial {
            return Err(Error::InvalidArgument(
                "a partial check (max_duration) cannot repair".into(),
            ));
        }
        let mut report = CheckReport::default();
        let mut current_index: Option<NsIndex> = None;
        let mut transaction_id = match self.get_transaction_id() {
            Ok(tid) => match self.open_index(tid, true) {
                Ok(ix) => {
                    current_index = Some(ix);
                    tid
                }
                Err(_) => self.io.get_segments_transaction_id()?,
            },
            Err(_) => self.io.get_segments_transaction_id()?,
        };
        if transaction_id.is_none() {
            transaction_id = self.get_index_transaction_id()?;
        }
        if transaction_id.is_none() {
            transaction_id = self.io.get_latest_segment()?;
        }
        let Some(transaction_id) = transaction_id else {
            report
                .errors
                .push("This repository contains no valid data.".into());
            report.ok = false;
            return Ok(report);
        };
        if repair {
            self.io.cleanup(transaction_id)?;
        }
        let segments_transaction_id = self.io.get_segments_transaction_id()?;
        self.prepare_txn(None, true)?;
        // a partial check continues where the previous one stopped (config
        // `last_segment_checked`); a full check forgets about it
        let last_segment_checked: i64 = if partial {
            self.config
                .get("last_segment_checked")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(-1)
        } else {
            self.config.delete("last_segment_checked")?;
            self.save_config()?;
            -1
        };
        let t_start = Instant::now();
        let mut stopped_early = false;
        for (segment, filename) in self.io.segment_list(None, false)? {
            if i64::from(segment) <= last_segment_checked {
                continue;
            }
            if segment > transaction_id {
                continue;
            }
            let read = |io: &mut crate::segment::LoggedIO| -> std::result::Result<Vec<_>, crate::segment::SegmentError> {
                io.iter_objects(segment, 0, false, true)?.collect()
            };
            let objects = match read(&mut self.io) {
                Ok(objs) => objs,
                Err(e) if e.is_integrity_error() => {
                    report.errors.push(Error::from(e).to_string());
                    if repair {
                        self.io.recover_segment(segment, &filename)?;
                        read(&mut self.io)?
                    } else {
                        Vec::new()
                    }
                }
                Err(e) => return Err(e.into()),
            };
            if !partial {
                self.update_index(segment, &objects, Some(&mut report.errors))?;
            }
            if let (true, Some(limit)) = (partial, max_duration) {
                if t_start.elapsed() > limit {
                    report.warnings.push(format!(
                        "finished partial segment check, last segment checked is {segment}"
                    ));
                    self.config
                        .set("last_segment_checked", &segment.to_string())?;
                    self.save_config()?;
                    stopped_early = true;
                    break;
                }
            }
        }
        if !stopped_early {
            self.config.delete("last_segment_checked")?;
            self.save_config()?;
        }
        if repair && segments_transaction_id.is_none() {
            report
                .errors
                .push(format!("Adding commit tag to segment {transaction_id}"));
            self.io.segment = transaction_id.wrapping_add(1);
            self.io.write_commit(false)?;
        }
        if let Some(current) = current_index.as_ref().filter(|c| !c.is_empty() && !partial) {
            if !repair {
                let rebuilt = self.index.as_ref();
                let rebuilt_len = rebuilt.map_or(0, |i| i.len());
                if current.len() != rebuilt_len {
                    report.errors.push("Index object count mismatch.".into());
                    report
                        .errors
                        .push(format!("committed index: {} objects", current.len()));
                    report
                        .errors
                        .push(format!("rebuilt index:   {rebuilt_len} objects"));
                }
                if let Some(rebuilt) = rebuilt {
                    let fmt = |v: Option<crate::hashindex::NsEntry>| match v {
                        Some(e) => format!("({}, {})", e.segment, e.offset),
                        None => "<not found>".to_string(),
                    };
                    for (key, value) in rebuilt.iter() {
                        let cur = current.get(&key);
                        if cur != Some(value) {
                            report.warnings.push(format!(
                                "ID: {:<64} rebuilt index: {:<16} committed index: {:<16}",
                                hex::encode(key),
                                fmt(Some(value)),
                                fmt(cur)
                            ));
                        }
                    }
                    for (key, value) in current.iter() {
                        if rebuilt.contains_key(&key) {
                            continue;
                        }
                        report.warnings.push(format!(
                            "ID: {:<64} rebuilt index: {:<16} committed index: {:<16}",
                            hex::encode(key),
                            fmt(None),
                            fmt(Some(value))
                        ));
                    }
                }
            }
        }
        if repair && !partial {
            self.write_index()?;
        }
        self.rollback_inner();
        report.ok = report.errors.is_empty() || repair;
        Ok(report)
    }
}
