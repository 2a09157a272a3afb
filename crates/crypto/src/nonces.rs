//! AES-CTR nonce reservation (borg 1.2.4 `borg/crypto/nonces.py`; docs:
//! `internals/security.rst` "Encryption" / nonce handling).
//!
//! Nonces count AES blocks and must never repeat under one key, even across crashes or
//! aborted transactions. Before any nonce is used a block of nonce space is reserved and
//! committed both to the repository (multi-client case, via [`RepoNonces`]) and to the local
//! security directory file `<security dir>/<repo id hex>/nonce` (16 hex digits, big-endian
//! u64, no newline). The next start is the maximum of the repo's, the local file's, the
//! manifest-derived nonce and the previous reservation end.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Reservation granularity in AES blocks (`NONCE_SPACE_RESERVATION`, 2**28 blocks = 4 GiB).
pub const NONCE_SPACE_RESERVATION: u64 = 1 << 28;
/// Largest representable nonce (`MAX_REPRESENTABLE_NONCE`).
pub const MAX_REPRESENTABLE_NONCE: u64 = u64::MAX;

/// Repository side of nonce reservation (borg's `Repository.get_free_nonce` and
/// `commit_nonce_reservation`). Implemented by the repository crate.
pub trait RepoNonces {
    /// Next unreserved nonce recorded in the repository, if any.
    fn get_free_nonce(&mut self) -> Result<Option<u64>>;
    /// Record `next_unreserved`; `start_nonce` is the value previously read with
    /// [`RepoNonces::get_free_nonce`] (the repository refuses if it changed meanwhile).
    fn commit_nonce_reservation(
        &mut self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<()>;
}

/// A repository without nonce storage (e.g. an old server): always `None`, commits ignored.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRepoNonces;

impl RepoNonces for NoRepoNonces {
    fn get_free_nonce(&mut self) -> Result<Option<u64>> {
        Ok(None)
    }
    fn commit_nonce_reservation(&mut self, _: u64, _: Option<u64>) -> Result<()> {
        Ok(())
    }
}

/// Hands out fresh AES-CTR nonces, reserving space like borg's `NonceManager`, and tracks the
/// cipher's next IV (borg keeps that in the cipher object: IV + blocks used).
#[derive(Debug)]
pub struct NonceManager<R: RepoNonces> {
    repo: R,
    nonce_file: PathBuf,
    manifest_nonce: u64,
    end_of_reservation: Option<u64>,
    next_iv: u64,
}

impl<R: RepoNonces> NonceManager<R> {
    /// `manifest_nonce` is the first nonce after the current manifest envelope
    /// ([`crate::Key::nonce_after_manifest`], 0 for a new repository); `nonce_file` usually
    /// [`crate::paths::nonce_file`].
    pub fn new(repo: R, nonce_file: PathBuf, manifest_nonce: u64) -> Self {
        NonceManager {
            repo,
            nonce_file,
            manifest_nonce,
            end_of_reservation: None,
            next_iv: manifest_nonce,
        }
    }

    /// The repository handle.
    pub fn repo_mut(&mut self) -> &mut R {
        &mut self.repo
    }

    /// Path of the local nonce file.
    pub fn nonce_file(&self) -> &Path {
        &self.nonce_file
    }

    /// End of the current reservation, if any.
    pub fn end_of_reservation(&self) -> Option<u64> {
        self.end_of_reservation
    }

    /// Read the local nonce file (`None` if absent).
    pub fn local_free_nonce(&self) -> Result<Option<u64>> {
        match std::fs::read_to_string(&self.nonce_file) {
            Ok(s) => {
                let mut b = [0u8; 8];
                hex::decode_to_slice(s.trim(), &mut b).map_err(|_| {
                    Error::Nonce(format!(
                        "malformed nonce file {}",
                        self.nonce_file.display()
                    ))
                })?;
                Ok(Some(u64::from_be_bytes(b)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(
                format!("reading {}", self.nonce_file.display()),
                e,
            )),
        }
    }

    fn commit_local(&self, next_unreserved: u64, start: Option<u64>) -> Result<()> {
        if self.local_free_nonce()? != start {
            return Err(Error::Nonce(
                "nonce space reservation with mismatched previous state".into(),
            ));
        }
        if let Some(dir) = self.nonce_file.parent() {
            crate::paths::ensure_dir(dir)?;
        }
        // atomic replace, like borg's SaveFile
        let tmp = self.nonce_file.with_extension("tmp");
        std::fs::write(&tmp, hex::encode(next_unreserved.to_be_bytes()))
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &self.nonce_file)
            .map_err(|e| Error::io(format!("renaming to {}", self.nonce_file.display()), e))
    }

    /// borg's `ensure_reservation(nonce, nonce_space_needed)`: returns the nonce to use for
    /// `needed` blocks, which is `nonce` itself if it lies within the current reservation,
    /// otherwise the start of a newly committed reservation.
    pub fn ensure_reservation(&mut self, nonce: u64, needed: u64) -> Result<u64> {
        if let Some(end) = self.end_of_reservation {
            if nonce > end {
                return Err(Error::Nonce("nonce beyond reservation".into()));
            }
            if nonce.checked_add(needed).is_some_and(|n| n <= end) {
                return Ok(nonce);
            }
        }
        let repo_free = self.repo.get_free_nonce()?;
        let local_free = self.local_free_nonce()?;
        let free = [
            repo_free,
            local_free,
            Some(self.manifest_nonce),
            self.end_of_reservation,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        let end = free
            .checked_add(needed)
            .and_then(|n| n.checked_add(NONCE_SPACE_RESERVATION))
            .filter(|&n| n < MAX_REPRESENTABLE_NONCE)
            .ok_or_else(|| Error::Nonce("nonce space exhausted".into()))?;
        self.repo.commit_nonce_reservation(end, repo_free)?;
        self.commit_local(end, local_free)?;
        self.end_of_reservation = Some(end);
        Ok(free)
    }

    /// Nonce for the next envelope of `blocks` AES blocks; advances the internal IV.
    pub fn next_nonce(&mut self, blocks: u64) -> Result<u64> {
        let n = self.ensure_reservation(self.next_iv, blocks)?;
        self.next_iv = n + blocks;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct MemRepo {
        free: Option<u64>,
        commits: Vec<(u64, Option<u64>)>,
    }
    impl RepoNonces for MemRepo {
        fn get_free_nonce(&mut self) -> Result<Option<u64>> {
            Ok(self.free)
        }
        fn commit_nonce_reservation(&mut self, next: u64, start: Option<u64>) -> Result<()> {
            if start != self.free {
                return Err(Error::Nonce("repo mismatch".into()));
            }
            self.commit_nonce_reservation_unchecked(next, start);
            Ok(())
        }
    }
    impl MemRepo {
        fn commit_nonce_reservation_unchecked(&mut self, next: u64, start: Option<u64>) {
            self.free = Some(next);
            self.commits.push((next, start));
        }
    }

    #[test]
    fn reserves_like_borg() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sec").join("nonce");
        let mut nm = NonceManager::new(MemRepo::default(), file.clone(), 10);
        assert_eq!(nm.next_nonce(5).unwrap(), 10);
        assert_eq!(
            nm.end_of_reservation(),
            Some(10 + 5 + NONCE_SPACE_RESERVATION)
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("{:016x}", 15 + NONCE_SPACE_RESERVATION)
        );
        assert_eq!(nm.next_nonce(3).unwrap(), 15);
        assert_eq!(nm.repo_mut().commits.len(), 1);
        // exceeding the reservation triggers a new one starting at its end
        let big = NONCE_SPACE_RESERVATION;
        assert_eq!(nm.next_nonce(big).unwrap(), 15 + NONCE_SPACE_RESERVATION);
        assert_eq!(nm.repo_mut().commits.len(), 2);

        // a second client honours the max of repo and local state
        let mut repo2 = MemRepo {
            free: Some(7),
            ..Default::default()
        };
        repo2.free = Some(7);
        let mut nm2 = NonceManager::new(repo2, file.clone(), 0);
        let local = nm2.local_free_nonce().unwrap().unwrap();
        assert_eq!(nm2.next_nonce(1).unwrap(), local);
    }

    #[test]
    fn local_state_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nonce");
        std::fs::write(&file, "zz").unwrap();
        let mut nm = NonceManager::new(NoRepoNonces, file, 0);
        assert!(nm.next_nonce(1).is_err());
    }
}
