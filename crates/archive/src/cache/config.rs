//! The cache's `config` file: an INI file as Python's `configparser` reads and writes it
//! (borg 1.2 `cache.py` `CacheConfig`).
//!
//! ```text
//! [cache]
//! version = 1
//! repository = <repository id hex>
//! manifest = <manifest id hex the chunks cache matches>
//! timestamp = <manifest timestamp>
//! key_type = <key type byte, decimal>
//! previous_location = <canonical repository location>
//! ignored_features =
//! mandatory_features =
//!
//! [integrity]
//! manifest = <manifest id hex, must equal [cache] manifest>
//! files = {"algorithm": "XXH64", "digests": {...}}
//! chunks = {"algorithm": "XXH64", "digests": {...}}
//! ```
//!
//! Sections and keys keep their order, so a file borg wrote is rewritten with only the
//! changed values differing; keys are lower-cased as `configparser` does.

/// A parsed INI file (sections in order, each with ordered `key = value` pairs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ini {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Ini {
    /// Parses `text`; `Err` names the first line that is neither a section header, a
    /// comment nor a `key = value` / `key: value` pair.
    pub fn parse(text: &str) -> Result<Ini, String> {
        let mut ini = Ini::default();
        let mut last_key: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            // an indented line continues the previous value (multi-line values)
            if line.starts_with([' ', '\t']) {
                if let (Some(k), Some((_, entries))) = (&last_key, ini.sections.last_mut()) {
                    if let Some(e) = entries.iter_mut().find(|(key, _)| key == k) {
                        e.1.push('\n');
                        e.1.push_str(trimmed);
                        continue;
                    }
                }
            }
            if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                last_key = None;
                ini.sections.push((name.to_string(), Vec::new()));
                continue;
            }
            let Some(pos) = trimmed.find(['=', ':']) else {
                return Err(format!("line {}: not a key = value pair", n + 1));
            };
            let Some((_, entries)) = ini.sections.last_mut() else {
                return Err(format!("line {}: value outside of a section", n + 1));
            };
            let k = trimmed[..pos].trim().to_lowercase();
            let v = trimmed[pos + 1..].trim().to_string();
            last_key = Some(k.clone());
            match entries.iter_mut().find(|(key, _)| *key == k) {
                Some(e) => e.1 = v,
                None => entries.push((k, v)),
            }
        }
        Ok(ini)
    }

    /// Whether `section` exists.
    pub fn has_section(&self, section: &str) -> bool {
        self.sections.iter().any(|(s, _)| s == section)
    }

    /// The value of `key` in `section`.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|(s, _)| s == section)?
            .1
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs of `section`.
    pub fn items(&self, section: &str) -> Option<&[(String, String)]> {
        self.sections
            .iter()
            .find(|(s, _)| s == section)
            .map(|(_, e)| e.as_slice())
    }

    /// Sets `key` in `section`, creating the section at the end when missing.
    pub fn set(&mut self, section: &str, key: &str, value: &str) {
        let idx = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.to_string(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let entries = &mut self.sections[idx].1;
        let key = key.to_lowercase();
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value.to_string(),
            None => entries.push((key, value.to_string())),
        }
    }

    /// Removes `key` from `section`; returns the old value.
    pub fn remove(&mut self, section: &str, key: &str) -> Option<String> {
        let entries = &mut self.sections.iter_mut().find(|(s, _)| s == section)?.1;
        let pos = entries.iter().position(|(k, _)| k == key)?;
        Some(entries.remove(pos).1)
    }

    /// The text `configparser.write` produces: `key = value` lines (a space after `=` even
    /// for empty values) and a blank line after every section.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, entries) in &self.sections {
            out.push_str(&format!("[{name}]\n"));
            for (k, v) in entries {
                out.push_str(&format!("{k} = {}\n", v.replace('\n', "\n\t")));
            }
            out.push('\n');
        }
        out
    }
}

/// borg's `parse_stringified_list`: comma separated, empty items dropped.
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_like_configparser() {
        let text = "[cache]\nversion = 1\nmanifest = \n\n[integrity]\nmanifest = \n\n";
        let mut ini = Ini::parse(text).unwrap();
        assert_eq!(ini.to_text(), text);
        assert_eq!(ini.get("cache", "manifest"), Some(""));
        ini.set("cache", "Key_Type", "2");
        assert_eq!(ini.get("cache", "key_type"), Some("2"));
        assert_eq!(ini.remove("integrity", "manifest"), Some(String::new()));
        assert!(Ini::parse("x = 1\n").is_err());
        let multi = "[repository]\nkey = ab\n\tcd\nid = 1\n\n";
        let ini = Ini::parse(multi).unwrap();
        assert_eq!(ini.get("repository", "key"), Some("ab\ncd"));
        assert_eq!(ini.to_text(), multi);
        assert_eq!(parse_list("a, b,,"), vec!["a", "b"]);
    }
}
