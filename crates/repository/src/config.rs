//! The repository `config` file (borg 1.2.4 `repository.py`: `create`, `open`,
//! `save_config`, `save_key`/`load_key`; `archiver.py`: `do_config`), an INI file read
//! and written by Python's `configparser.ConfigParser(interpolation=None)`:
//!
//! ```text
//! [repository]
//! version = 1
//! segments_per_dir = 1000
//! max_segment_size = 524288000
//! append_only = 0
//! storage_quota = 0
//! additional_free_space = 0
//! id = <64 hex digits>
//! key = <base64 line 1>
//! \t<base64 line 2>            (repokey: multi-line value, continuation lines start with a tab)
//!
//! ```
//!
//! This module implements configparser's rules (case-folded keys, `=`/`:` delimiters,
//! `#`/`;` comment lines, indented continuation lines joined with `\n`, strict
//! duplicate detection) and its exact output format, and keeps unknown keys and sections
//! so that `borg config` edits round-trip.
//!
//! ```
//! use rborg_repository::config::RepoConfig;
//!
//! let mut c = RepoConfig::new([0xab; 32]);
//! c.set("storage_quota", "10G").unwrap();
//! assert_eq!(c.storage_quota, 10_000_000_000);
//! assert_eq!(c.get("storage_quota").as_deref(), Some("10G"));
//! let text = c.to_ini();
//! assert!(text.starts_with("[repository]\nversion = 1\n"));
//! assert_eq!(RepoConfig::parse(&text).unwrap(), c);
//! ```

use std::io::Write;
use std::path::Path;

/// Config file errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading/writing failed (`NotFound` if there is no config file).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// configparser would reject the file (syntax).
    #[error("config file parse error, line {line}: {message}")]
    Syntax {
        /// 1-based line number
        line: usize,
        /// what is wrong
        message: String,
    },
    /// A required key is missing or a value is invalid (also the `borg config`
    /// validation messages: "Invalid name", "Invalid value", ...).
    #[error("{0}")]
    Invalid(String),
}

/// borg's default `segments_per_dir`.
pub const DEFAULT_SEGMENTS_PER_DIR: u32 = 1000;
/// borg's default `max_segment_size` (500 MiB).
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 500 * 1024 * 1024;
/// Upper bound for `max_segment_size` (`MAX_SEGMENT_SIZE_LIMIT`, 2**31 - 1 - header).
pub const MAX_SEGMENT_SIZE_LIMIT: u64 = (1 << 31) - 1 - 9;

const SECTION: &str = "repository";
const KNOWN: [&str; 8] = [
    "version",
    "segments_per_dir",
    "max_segment_size",
    "append_only",
    "storage_quota",
    "additional_free_space",
    "id",
    "key",
];

/// The `[repository]` section plus everything else in the file, preserved.
/// Equality compares the effective content (typed fields, items, other sections).
#[derive(Clone, Debug)]
pub struct RepoConfig {
    /// Repository format version (borg 1.x: 1).
    pub version: u32,
    /// Segment files per `data/N` directory.
    pub segments_per_dir: u32,
    /// Segment files are closed after reaching this size.
    pub max_segment_size: u64,
    /// Refuse deletes/compaction (`append_only = 1`).
    pub append_only: bool,
    /// 0 = no quota.
    pub storage_quota: u64,
    /// Free space to keep on the file system.
    pub additional_free_space: u64,
    /// Repository id.
    pub id: [u8; 32],
    /// The repokey blob (base64, lines joined with `\n` as configparser returns them),
    /// if the key is stored in the repository.
    pub key: Option<String>,
    /// All `[repository]` items in file order with their raw string values.
    raw: Vec<(String, String)>,
    /// Other sections, preserved verbatim (parsed).
    other_sections: Vec<(String, Vec<(String, String)>)>,
}

impl PartialEq for RepoConfig {
    fn eq(&self, other: &Self) -> bool {
        self.items() == other.items() && self.other_sections == other.other_sections
    }
}
impl Eq for RepoConfig {}

/// borg's `parse_file_size`: `int(float(s[:-1]) * 1000**k)` for a K/M/G/T/P suffix.
pub fn parse_file_size(s: &str) -> Option<u64> {
    let (num, factor) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1e3),
        'M' => (&s[..s.len() - 1], 1e6),
        'G' => (&s[..s.len() - 1], 1e9),
        'T' => (&s[..s.len() - 1], 1e12),
        'P' => (&s[..s.len() - 1], 1e15),
        _ => (s, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    let v = (v * factor).trunc();
    (v.is_finite() && (0.0..1.8e19).contains(&v)).then_some(v as u64)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

type Sections = Vec<(String, Vec<(String, String)>)>;

/// configparser's `read_file` (default options, `interpolation=None`).
fn parse_ini(text: &str) -> Result<Sections, ConfigError> {
    let mut sections: Sections = Vec::new();
    // (section index, item index) of the option currently collecting lines
    let mut cur: Option<(usize, usize)> = None;
    let mut in_section = false;
    let mut lines_of: Vec<String> = Vec::new();
    let mut indent_level = 0usize;
    let flush = |sections: &mut Sections, cur: Option<(usize, usize)>, lines: &mut Vec<String>| {
        if let Some((s, i)) = cur {
            sections[s].1[i].1 = lines.join("\n").trim_end().to_string();
        }
        lines.clear();
    };
    let text = text.replace("\r\n", "\n");
    for (lineno, line) in text.split('\n').enumerate() {
        let value = line.trim();
        let is_comment = value.starts_with('#') || value.starts_with(';');
        if value.is_empty() || is_comment {
            if !is_comment && cur.is_some() {
                lines_of.push(String::new());
            }
            continue;
        }
        let cur_indent = line.len() - line.trim_start().len();
        if cur.is_some() && cur_indent > indent_level {
            lines_of.push(value.to_string());
            continue;
        }
        indent_level = cur_indent;
        let syntax = |m: &str| ConfigError::Syntax {
            line: lineno + 1,
            message: m.to_string(),
        };
        if let Some(rest) = value.strip_prefix('[') {
            if let Some(end) = rest.rfind(']').filter(|&e| e > 0) {
                flush(&mut sections, cur.take(), &mut lines_of);
                let name = &rest[..end];
                if sections.iter().any(|(n, _)| n == name) {
                    return Err(syntax(&format!("section {name:?} already exists")));
                }
                sections.push((name.to_string(), Vec::new()));
                in_section = true;
                continue;
            }
        }
        if !in_section {
            return Err(syntax("file contains no section headers"));
        }
        let Some(pos) = value.find(['=', ':']) else {
            return Err(syntax("option without value"));
        };
        let name = value[..pos].trim_end().to_lowercase();
        if name.is_empty() {
            return Err(syntax("empty option name"));
        }
        flush(&mut sections, cur.take(), &mut lines_of);
        let s = sections.len() - 1;
        if sections[s].1.iter().any(|(n, _)| *n == name) {
            return Err(syntax(&format!("option {name:?} already exists")));
        }
        sections[s].1.push((name, String::new()));
        cur = Some((s, sections[s].1.len() - 1));
        lines_of.push(value[pos + 1..].trim().to_string());
    }
    flush(&mut sections, cur.take(), &mut lines_of);
    Ok(sections)
}

impl RepoConfig {
    /// The config `borg init` writes (defaults, not append-only, no quota).
    pub fn new(id: [u8; 32]) -> Self {
        let mut c = RepoConfig {
            version: 1,
            segments_per_dir: DEFAULT_SEGMENTS_PER_DIR,
            max_segment_size: DEFAULT_MAX_SEGMENT_SIZE,
            append_only: false,
            storage_quota: 0,
            additional_free_space: 0,
            id,
            key: None,
            raw: Vec::new(),
            other_sections: Vec::new(),
        };
        // borg init writes these keys in this order; later `set`s update them in place.
        c.raw = KNOWN[..7]
            .iter()
            .map(|k| (k.to_string(), c.known_value(k).unwrap_or_default()))
            .collect();
        c
    }

    /// Read and parse a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)?;
        Self::parse(&text)
    }

    /// Parse config text like `Repository.open` (required: `version`,
    /// `segments_per_dir`, `max_segment_size`, `id`).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut sections = parse_ini(text)?;
        let pos = sections
            .iter()
            .position(|(n, _)| n == SECTION)
            .ok_or_else(|| ConfigError::Invalid("config has no [repository] section".into()))?;
        let (_, raw) = sections.remove(pos);
        let get = |k: &str| raw.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let req =
            |k: &str| get(k).ok_or_else(|| ConfigError::Invalid(format!("config is missing {k}")));
        let bad = |k: &str, v: &str| ConfigError::Invalid(format!("invalid value for {k}: {v:?}"));
        let int = |k: &str| -> Result<u32, ConfigError> {
            let v = req(k)?;
            v.trim().parse().map_err(|_| bad(k, v))
        };
        let size = |k: &str, v: &str| parse_file_size(v).ok_or_else(|| bad(k, v));
        let version = int("version")?;
        let segments_per_dir = int("segments_per_dir")?;
        let max_segment_size = size("max_segment_size", req("max_segment_size")?)?;
        let additional_free_space =
            get("additional_free_space").map_or(Ok(0), |v| size("additional_free_space", v))?;
        let storage_quota = get("storage_quota").map_or(Ok(0), |v| size("storage_quota", v))?;
        let append_only = match get("append_only") {
            Some(v) => parse_bool(v).ok_or_else(|| bad("append_only", v))?,
            None => false,
        };
        let id_s = req("id")?;
        let id = hex::decode(id_s.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("id", id_s))?;
        let key = get("key").map(str::to_string);
        Ok(RepoConfig {
            version,
            segments_per_dir,
            max_segment_size,
            append_only,
            storage_quota,
            additional_free_space,
            id,
            key,
            raw,
            other_sections: sections,
        })
    }

    /// The string borg would find for a known key given the typed fields; keeps the raw
    /// spelling (e.g. `10G`) when it still means the same value.
    fn known_value(&self, name: &str) -> Option<String> {
        let raw = self
            .raw
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        let keep_size = |v: u64| match raw {
            Some(r) if parse_file_size(r) == Some(v) => r.to_string(),
            _ => v.to_string(),
        };
        Some(match name {
            "version" => match raw {
                Some(r) if r.trim().parse::<u32>().ok() == Some(self.version) => r.to_string(),
                _ => self.version.to_string(),
            },
            "segments_per_dir" => match raw {
                Some(r) if r.trim().parse::<u32>().ok() == Some(self.segments_per_dir) => {
                    r.to_string()
                }
                _ => self.segments_per_dir.to_string(),
            },
            "max_segment_size" => keep_size(self.max_segment_size),
            "storage_quota" => keep_size(self.storage_quota),
            "additional_free_space" => keep_size(self.additional_free_space),
            "append_only" => match raw {
                Some(r) if parse_bool(r) == Some(self.append_only) => r.to_string(),
                _ => u8::from(self.append_only).to_string(),
            },
            "id" => match raw {
                Some(r) if hex::decode(r.trim()).ok().as_deref() == Some(&self.id[..]) => {
                    r.to_string()
                }
                _ => hex::encode(self.id),
            },
            "key" => return self.key.clone(),
            _ => return None,
        })
    }

    /// The current `[repository]` items in file order (known keys missing from the
    /// file are appended in the order `borg init` writes them).
    pub fn items(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (n, v) in &self.raw {
            if KNOWN.contains(&n.as_str()) {
                if let Some(v) = self.known_value(n) {
                    out.push((n.clone(), v));
                }
            } else {
                out.push((n.clone(), v.clone()));
            }
        }
        for k in KNOWN {
            if !out.iter().any(|(n, _)| n == k) {
                if let Some(v) = self.known_value(k) {
                    out.push((k.to_string(), v));
                }
            }
        }
        out
    }

    /// Value of `[repository] name` as `borg config REPO name` prints it.
    pub fn get(&self, name: &str) -> Option<String> {
        let name = name.to_lowercase();
        self.items()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// `borg config REPO name value`: validated exactly like borg's `repo_validate`
    /// (names: segments_per_dir, last_segment_checked, max_segment_size,
    /// additional_free_space, storage_quota, append_only, id).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let name = name.to_lowercase();
        let invalid = |m: &str| ConfigError::Invalid(m.to_string());
        match name.as_str() {
            "segments_per_dir" | "last_segment_checked" => {
                let n: i64 = value.trim().parse().map_err(|_| invalid("Invalid value"))?;
                if name == "segments_per_dir" {
                    self.segments_per_dir =
                        u32::try_from(n).map_err(|_| invalid("Invalid value"))?;
                }
            }
            "max_segment_size" | "additional_free_space" | "storage_quota" => {
                let v = parse_file_size(value).ok_or_else(|| invalid("Invalid value"))?;
                match name.as_str() {
                    "storage_quota" if v < 10_000_000 => {
                        return Err(invalid("Invalid value: storage_quota < 10M"))
                    }
                    "max_segment_size" if v >= MAX_SEGMENT_SIZE_LIMIT => {
                        return Err(ConfigError::Invalid(format!(
                            "Invalid value: max_segment_size >= {MAX_SEGMENT_SIZE_LIMIT}"
                        )))
                    }
                    "storage_quota" => self.storage_quota = v,
                    "max_segment_size" => self.max_segment_size = v,
                    _ => self.additional_free_space = v,
                }
            }
            "append_only" => match value {
                "0" => self.append_only = false,
                "1" => self.append_only = true,
                _ => return Err(invalid("Invalid value")),
            },
            "id" => {
                self.id = hex::decode(value)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| invalid("Invalid value, must be 64 hex digits"))?;
            }
            _ => return Err(invalid("Invalid name")),
        }
        self.set_raw(&name, value);
        Ok(())
    }

    fn set_raw(&mut self, name: &str, value: &str) {
        match self.raw.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.raw.push((name.to_string(), value.to_string())),
        }
    }

    /// `borg config --delete REPO name` (same name validation as [`RepoConfig::set`]);
    /// deleting a key with a default makes the default effective again.
    pub fn delete(&mut self, name: &str) -> Result<(), ConfigError> {
        let name = name.to_lowercase();
        match name.as_str() {
            "segments_per_dir"
            | "last_segment_checked"
            | "max_segment_size"
            | "additional_free_space"
            | "storage_quota"
            | "append_only"
            | "id" => {}
            _ => return Err(ConfigError::Invalid("Invalid name".into())),
        }
        self.raw.retain(|(n, _)| *n != name);
        match name.as_str() {
            "additional_free_space" => self.additional_free_space = 0,
            "storage_quota" => self.storage_quota = 0,
            "append_only" => self.append_only = false,
            _ => {}
        }
        Ok(())
    }

    /// The file text exactly as configparser's `write` produces it.
    pub fn to_ini(&self) -> String {
        let mut out = String::new();
        let mut section = |name: &str, items: &[(String, String)]| {
            out.push_str(&format!("[{name}]\n"));
            for (k, v) in items {
                out.push_str(&format!("{k} = {}\n", v.replace('\n', "\n\t")));
            }
            out.push('\n');
        };
        // configparser keeps section order; `[repository]` is first in every borg config.
        section(SECTION, &self.items());
        for (name, items) in &self.other_sections {
            section(name, items);
        }
        out
    }

    /// Write atomically (temp file in the same directory, fsync, rename, fsync dir),
    /// like borg's `SaveFile`.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!("{name}.{:08x}.tmp", rand::random::<u32>()));
        let res = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.to_ini().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(res?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configparser_rules() {
        let text = "# comment\n[Repository2]\nA: 1\n[repository]\nVersion=1\nsegments_per_dir = 10\n\
                    max_segment_size = 5M\nid = \n    0101010101010101010101010101010101010101010101010101010101010101\n\
                    key = aaa\n\tbbb\n\n\tccc\n\n; trailing comment\n";
        let c = RepoConfig::parse(text).unwrap();
        assert_eq!(c.version, 1);
        assert_eq!(c.max_segment_size, 5_000_000);
        assert_eq!(c.id, [1u8; 32]);
        assert_eq!(c.key.as_deref(), Some("aaa\nbbb\n\nccc"));
        assert!(!c.append_only);
        assert!(RepoConfig::parse("[repository]\nversion = 1\nversion = 2\n").is_err());
        assert!(RepoConfig::parse("version = 1\n").is_err());
        assert!(matches!(
            RepoConfig::parse("[repository]\nversion = 1\n"),
            Err(ConfigError::Invalid(_))
        ));
        assert_eq!(parse_file_size("1.5G"), Some(1_500_000_000));
        assert_eq!(parse_file_size("x"), None);
        let mut c = c;
        assert!(c.set("nonsense", "1").is_err());
        assert!(c.set("storage_quota", "1M").is_err());
        assert!(c.set("append_only", "yes").is_err());
        c.set("append_only", "1").unwrap();
        assert!(c.append_only);
        let back = RepoConfig::parse(&c.to_ini()).unwrap();
        assert_eq!(back, c);
        assert!(c.to_ini().contains("[Repository2]\na = 1\n\n"));
    }
}
