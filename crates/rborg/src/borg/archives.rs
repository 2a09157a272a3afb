//! Archive selection shared by the commands that work on several archives (`list`, `info`,
//! `delete`, `check`): borg 1.2.4's `define_archive_filters_group` (`archiver.py`) for the
//! options and `Manifest.archives.list` / `list_considering` (`helpers/manifest.py`) for the
//! selection.

use clap::Args;
use rborg_archive::manifest::parse_timestamp;
use rborg_archive::patterns::archive_glob;
use rborg_archive::{ArchiveEntry, Manifest};

use super::common::CmdError;

/// The archive filter options (`-P`, `-a`, `--sort-by`, `--first`, `--last`), flattened into
/// each command's arguments right before its positional arguments.
#[derive(Debug, Args)]
pub struct ArchiveFilterArgs {
    /// only consider archive names starting with this prefix. (deprecated)
    #[arg(
        short = 'P',
        long,
        value_name = "PREFIX",
        conflicts_with = "glob_archives",
        value_parser = super::create::replace_placeholders
    )]
    pub prefix: Option<String>,
    /// only consider archive names matching the glob (placeholders such as `{hostname}` are
    /// replaced, as borg's `GlobSpec` does).
    #[arg(short = 'a', long = "glob-archives", value_name = "GLOB", value_parser = super::create::replace_placeholders)]
    pub glob_archives: Option<String>,
    /// Comma-separated list of sorting keys; valid keys are: timestamp, name, id; default is: timestamp
    #[arg(long = "sort-by", value_name = "KEYS", default_value = "timestamp", value_parser = parse_sort_by)]
    pub sort_by: String,
    /// consider first N archives after other filters were applied
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "last")]
    pub first: usize,
    /// consider last N archives after other filters were applied
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub last: usize,
}

/// borg's `sort_by_spec` (`helpers/parseformat.py`): the keys must be in `AI_HUMAN_SORT_KEYS`.
fn parse_sort_by(text: &str) -> Result<String, String> {
    for token in text.split(',') {
        if !matches!(token, "timestamp" | "name" | "id") {
            return Err(format!("Invalid sort key: {token}"));
        }
    }
    Ok(text.to_string())
}

impl ArchiveFilterArgs {
    /// Whether any option narrows the selection (the `--first`/`--last`/`-P`/`-a` checks of
    /// borg's commands; `--sort-by` alone selects everything).
    pub fn any(&self) -> bool {
        self.first > 0 || self.last > 0 || self.prefix.is_some() || self.glob_archives.is_some()
    }

    /// The archives these filters select, in output order (borg's `Manifest.archives.list`):
    /// names matching the glob (`-P PREFIX` is the glob `PREFIX*`; borg's `shellpattern`),
    /// without checkpoint archives unless `consider_checkpoints`, stably sorted by the
    /// `--sort-by` keys (the first key most significant), then cut to `--first` / `--last`.
    pub fn select<'m>(
        &self,
        manifest: &'m Manifest,
        consider_checkpoints: bool,
    ) -> Result<Vec<(&'m String, &'m ArchiveEntry)>, CmdError> {
        let glob = match (&self.prefix, &self.glob_archives) {
            (Some(p), _) => Some(format!("{p}*")),
            (None, g) => g.clone(),
        };
        let re = archive_glob(glob.as_deref().unwrap_or("*"))
            .map_err(|e| CmdError::new(e.to_string()))?;
        let mut archives: Vec<(&String, &ArchiveEntry)> = manifest
            .archives
            .iter()
            .filter(|(name, _)| re.is_match(name))
            .filter(|(name, _)| consider_checkpoints || !name.contains(".checkpoint"))
            .collect();
        for key in self.sort_by.split(',').rev() {
            match key {
                "name" => archives.sort_by(|a, b| a.0.cmp(b.0)),
                "id" => archives.sort_by_key(|a| a.1.id),
                _ => archives.sort_by_key(|a| parse_timestamp(&a.1.time)),
            }
        }
        if self.first > 0 {
            archives.truncate(self.first);
        } else if self.last > 0 {
            let skip = archives.len().saturating_sub(self.last);
            archives.drain(..skip);
        }
        Ok(archives)
    }

    /// The names of the selected archives, checkpoints included (what `delete` and `info`
    /// act on).
    pub fn select_names(&self, manifest: &Manifest) -> Result<Vec<String>, CmdError> {
        Ok(self
            .select(manifest, true)?
            .into_iter()
            .map(|(n, _)| n.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str, n: &str) -> bool {
        archive_glob(p).unwrap().is_match(n)
    }

    #[test]
    fn globs() {
        assert!(g("*", "abc"));
        assert!(g("a*c", "abbbc"));
        assert!(!g("a*c", "abbbd"));
        assert!(g("a?c", "abc"));
        assert!(g("[ab]x", "bx"));
        assert!(!g("[!ab]x", "bx"));
        assert!(g("[a-c]x", "bx"));
        assert!(!g("*", "a/b"));
        assert!(g("**/b", "a/x/b"));
    }

    #[test]
    fn sort_keys() {
        assert!(parse_sort_by("timestamp,name,id").is_ok());
        assert_eq!(
            parse_sort_by("name,ts").unwrap_err(),
            "Invalid sort key: ts"
        );
    }
}
