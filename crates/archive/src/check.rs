//! The archive consistency check of `borg check` (borg 1.2 `archive.py` `ArchiveChecker`, without
//! repair): every selected archive's metadata and item stream must decode and every chunk they
//! reference must exist; when all archives are checked, objects no archive references are
//! reported as orphans; `--verify-data` additionally decrypts, decompresses and ID-checks every
//! object of the repository.
//!
//! Messages are borg's, so scripts that read `borg check` output read rborg's the same way.

use std::collections::HashMap;

use rborg_crypto::Key;
use rborg_repository::{ObjectId, Repository};

use crate::archive::{open_object, PREFETCH};
use crate::manifest::MANIFEST_ID;
use crate::refcount::ArchiveRefs;
use crate::Manifest;

/// How many IDs one `list` call asks for (borg's `LIST_SCAN_LIMIT`).
const LIST_SCAN_LIMIT: usize = 100_000;

/// How serious a line of the report is (borg logs them at these levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Progress, logged at INFO.
    Info,
    /// A problem, logged at ERROR.
    Error,
}

/// What the check found, as borg logs it, in order.
#[derive(Debug, Default)]
pub struct ArchiveCheckReport {
    /// The log lines.
    pub lines: Vec<(Severity, String)>,
}

impl ArchiveCheckReport {
    /// True when no problem was found.
    pub fn ok(&self) -> bool {
        self.lines.iter().all(|(s, _)| *s == Severity::Info)
    }

    fn info(&mut self, line: String) {
        self.lines.push((Severity::Info, line));
    }

    fn error(&mut self, line: String) {
        self.lines.push((Severity::Error, line));
    }
}

/// Every object ID in the repository.
fn all_object_ids(repository: &mut dyn Repository) -> rborg_repository::Result<Vec<ObjectId>> {
    let mut ids = Vec::new();
    let mut marker: Option<ObjectId> = None;
    loop {
        let batch = repository.list(Some(LIST_SCAN_LIMIT), marker.as_ref())?;
        let Some(last) = batch.last().copied() else {
            return Ok(ids);
        };
        marker = Some(last);
        ids.extend(batch);
    }
}

/// Checks the archives named in `selected` (all of the manifest's archives when `check_all`).
pub fn check_archives(
    repository: &mut dyn Repository,
    key: &Key,
    manifest: &Manifest,
    selected: &[String],
    check_all: bool,
    verify_data: bool,
) -> rborg_repository::Result<ArchiveCheckReport> {
    let mut report = ArchiveCheckReport::default();
    let ids = all_object_ids(repository)?;
    if ids.is_empty() {
        report.error(
            "Repository contains no apparent data at all, cannot continue check/repair."
                .to_string(),
        );
        return Ok(report);
    }
    if verify_data {
        verify_data_of(repository, key, &ids, &mut report)?;
    }
    let mut refcounts: HashMap<ObjectId, u64> = ids.iter().map(|id| (*id, 0)).collect();
    let count = selected.len();
    for (i, name) in selected.iter().enumerate() {
        let Some(entry) = manifest.archives.get(name) else {
            continue;
        };
        report.info(format!("Analyzing archive {name} ({}/{count})", i + 1));
        if !refcounts.contains_key(&entry.id) {
            report.error(format!(
                "Archive metadata block {} is missing!",
                hex::encode(entry.id)
            ));
            continue;
        }
        match ArchiveRefs::collect(repository, key, &entry.id) {
            Ok(refs) => {
                let mut missing = 0usize;
                for r in &refs.refs {
                    match refcounts.get_mut(&r.id) {
                        Some(n) => *n += 1,
                        None => missing += 1,
                    }
                }
                if missing > 0 {
                    report.error(format!(
                        "Archive {name}: {missing} referenced chunks are missing from the repository."
                    ));
                }
            }
            Err(e) => report.error(format!("Archive {name}: {e}")),
        }
    }
    if check_all {
        let orphaned = refcounts
            .iter()
            .filter(|(id, n)| **n == 0 && **id != MANIFEST_ID)
            .count();
        if orphaned > 0 {
            report.error(format!("{orphaned} orphaned objects found!"));
        }
    } else {
        report.info("Orphaned objects check skipped (needs all archives checked).".to_string());
    }
    Ok(report)
}

/// `--verify-data`: every object must decrypt, decompress and match its ID (the manifest only
/// decrypts: it is not stored under its ID hash).
fn verify_data_of(
    repository: &mut dyn Repository,
    key: &Key,
    ids: &[ObjectId],
    report: &mut ArchiveCheckReport,
) -> rborg_repository::Result<()> {
    report.info("Starting cryptographic data integrity verification...".to_string());
    let mut errors = 0usize;
    for batch in ids.chunks(PREFETCH) {
        let cdatas = repository.get_many(batch)?;
        for (id, cdata) in batch.iter().zip(cdatas) {
            let result = if *id == MANIFEST_ID {
                key.decrypt(None, &cdata)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                open_object(key, id, &cdata)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = result {
                errors += 1;
                report.error(format!("chunk {}, integrity error: {e}", hex::encode(id)));
            }
        }
    }
    let line = format!(
        "Finished cryptographic data integrity verification, verified {} chunks with {errors} integrity errors.",
        ids.len()
    );
    if errors > 0 {
        report.error(line);
    } else {
        report.info(line);
    }
    Ok(())
}
