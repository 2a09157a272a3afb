//! Passphrases and where borg 1.2.4 gets them from (`Passphrase` in `borg/crypto/key.py`).
//!
//! Order for opening a key (`env_passphrase`): `BORG_PASSPHRASE`, then `BORG_PASSCOMMAND`
//! (split like `shlex.split`, stdout with trailing newlines removed), then
//! `BORG_PASSPHRASE_FD` (read to EOF, trailing newlines removed). For a new key
//! (`Passphrase.new`) `BORG_NEW_PASSPHRASE` is consulted first. Interactive prompting is the
//! CLI's job.

use std::io::Read;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A passphrase; its bytes (UTF-8, as borg's `passphrase.encode('utf-8')`) are zeroized on drop.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<Passphrase \"***hidden***\">")
    }
}

impl Passphrase {
    /// Wrap a passphrase string.
    pub fn new(s: impl Into<String>) -> Self {
        Passphrase(Zeroizing::new(s.into()))
    }

    /// The UTF-8 bytes fed to PBKDF2.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The passphrase text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the empty passphrase (borg tries it first and treats such keys as not
    /// "logically encrypted").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Passphrase for opening a key from the process environment.
    pub fn from_env() -> Result<Option<Passphrase>> {
        Passphrase::from_env_with(&|k| std::env::var(k).ok())
    }

    /// [`Passphrase::from_env`] with an injectable environment lookup (for tests).
    pub fn from_env_with(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Passphrase>> {
        if let Some(p) = env("BORG_PASSPHRASE") {
            return Ok(Some(Passphrase::new(p)));
        }
        if let Some(cmd) = env("BORG_PASSCOMMAND") {
            return passcommand(&cmd).map(Some);
        }
        if let Some(fd) = env("BORG_PASSPHRASE_FD").and_then(|s| s.trim().parse::<u32>().ok()) {
            return read_fd(fd).map(Some);
        }
        Ok(None)
    }

    /// Passphrase for a new key / changed passphrase: `BORG_NEW_PASSPHRASE`, else as
    /// [`Passphrase::from_env`].
    pub fn new_from_env() -> Result<Option<Passphrase>> {
        if let Ok(p) = std::env::var("BORG_NEW_PASSPHRASE") {
            return Ok(Some(Passphrase::new(p)));
        }
        Passphrase::from_env()
    }
}

fn strip_newlines(mut s: String) -> Passphrase {
    while s.ends_with('\n') {
        s.pop();
    }
    Passphrase(Zeroizing::new(s))
}

fn passcommand(cmd: &str) -> Result<Passphrase> {
    let argv =
        shlex_split(cmd).ok_or_else(|| Error::PasscommandFailure("No closing quotation".into()))?;
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| Error::PasscommandFailure("empty command".into()))?;
    let out = std::process::Command::new(prog)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::PasscommandFailure(e.to_string()))?;
    if !out.status.success() {
        return Err(Error::PasscommandFailure(format!(
            "Command '{argv:?}' returned non-zero exit status {}.",
            out.status.code().unwrap_or(-1)
        )));
    }
    let text =
        String::from_utf8(out.stdout).map_err(|e| Error::PasscommandFailure(e.to_string()))?;
    Ok(strip_newlines(text))
}

fn read_fd(fd: u32) -> Result<Passphrase> {
    // Opening /dev/fd/N avoids `unsafe` File::from_raw_fd; on Linux it reads the same pipe/file.
    let path = format!("/dev/fd/{fd}");
    let mut f =
        std::fs::File::open(&path).map_err(|e| Error::io(format!("BORG_PASSPHRASE_FD {fd}"), e))?;
    let mut s = String::new();
    f.read_to_string(&mut s)
        .map_err(|e| Error::io(format!("BORG_PASSPHRASE_FD {fd}"), e))?;
    Ok(strip_newlines(s))
}

/// POSIX-mode `shlex.split`: whitespace separation, single quotes literal, double quotes with
/// backslash escapes of `\ " $ `` ` and newline, backslash escapes outside quotes.
/// Returns `None` on an unterminated quote/escape.
pub fn shlex_split(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => {
                            let n = chars.next()?;
                            if !matches!(n, '\\' | '"' | '$' | '`' | '\n') {
                                cur.push('\\');
                            }
                            cur.push(n);
                        }
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shlex_like_python() {
        assert_eq!(
            shlex_split("echo 'a b' \"c\\\"d\" e\\ f").unwrap(),
            vec!["echo", "a b", "c\"d", "e f"]
        );
        assert_eq!(shlex_split("  a   b ").unwrap(), vec!["a", "b"]);
        assert!(shlex_split("a 'b").is_none());
    }

    #[test]
    fn env_order() {
        let env = |k: &str| match k {
            "BORG_PASSPHRASE" => Some("p1".to_string()),
            "BORG_PASSCOMMAND" => Some("false".to_string()),
            _ => None,
        };
        assert_eq!(
            Passphrase::from_env_with(&env).unwrap().unwrap().as_str(),
            "p1"
        );
        let env2 = |k: &str| (k == "BORG_PASSCOMMAND").then(|| "printf 'x y\\n\\n'".to_string());
        assert_eq!(
            Passphrase::from_env_with(&env2).unwrap().unwrap().as_str(),
            "x y"
        );
        let env3 = |k: &str| (k == "BORG_PASSCOMMAND").then(|| "false".to_string());
        assert!(matches!(
            Passphrase::from_env_with(&env3),
            Err(Error::PasscommandFailure(_))
        ));
        assert!(Passphrase::from_env_with(&|_| None).unwrap().is_none());
    }

    #[test]
    fn passphrase_fd() {
        use std::io::{Seek, Write};
        use std::os::fd::AsRawFd;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all("fd secret\n".as_bytes()).unwrap();
        f.rewind().unwrap();
        let fd = f.as_raw_fd().to_string();
        let env = |k: &str| (k == "BORG_PASSPHRASE_FD").then(|| fd.clone());
        assert_eq!(
            Passphrase::from_env_with(&env).unwrap().unwrap().as_str(),
            "fd secret"
        );
        let env_bad = |k: &str| (k == "BORG_PASSPHRASE_FD").then(|| "notanumber".to_string());
        assert!(Passphrase::from_env_with(&env_bad).unwrap().is_none());
    }
}
