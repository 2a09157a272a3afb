//! Key export and import (borg 1.2.4 `borg/crypto/keymanager.py`: `borg key export`,
//! `--paper`, `--qr-html`, `borg key import [--paper]`).
//!
//! These work on the *key text* (the passphrase-protected base64 blob, see
//! [`crate::keyblob`]); no passphrase is needed.
//!
//! Paper format (`BORG PAPER KEY v1`): the binary blob is cut into 18-byte lines, each shown
//! as hex grouped by 6 characters with a 2-hex-digit checksum `sha256(idx_be16 || line)[:2]`;
//! the `id:` line holds `<lines> / <first 18 hex of repo id> / <sha256(blob) first 12 hex>`
//! and its own checksum over `"<lines>/<repoid18>/<checksum12>"`.
//!
//! QR/HTML export (`--qr-html`): borg ships a JavaScript page that draws the QR code in the
//! browser. rborg instead writes its own static page: the key file text (exactly as
//! [`export_keyfile`] produces it, HTML-escaped in a `<pre>`) plus a QR code of that same text
//! rendered to inline SVG in Rust, so the page needs no network access and no JavaScript.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::keyblob::{self, FILE_ID};

fn sha256_trunc(data: &[u8], n: usize) -> String {
    let mut h = hex::encode(Sha256::digest(data));
    h.truncate(n);
    h
}

fn grouped(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 6);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && i % 6 == 0 {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

/// Plain export (`borg key export`): the key file format for any key storage.
pub fn export_keyfile(repository_id: &[u8], key_text: &str) -> String {
    keyblob::keyfile_from_text(repository_id, key_text)
}

/// Error-correction level of the QR code on the `--qr-html` page. `M` recovers from ~15 %
/// damaged modules, which matters for a printout, and still holds 2331 bytes (a borg key file
/// is under 1 KiB). Only if the text does not fit is `L` tried.
pub const QR_EC_LEVEL: EcLevel = EcLevel::M;

/// `--qr-html` export (borg 1.2.4 `KeyManager.export_qr`): a self-contained, printable HTML
/// page for `borg key export --qr-html`.
///
/// The page shows the key file text exactly as [`export_keyfile`] produces it (HTML-escaped
/// inside `<pre id="keyfile">`, so the unescaped element content is that text byte for byte),
/// one inline `<svg>` QR code encoding the same text (error-correction level [`QR_EC_LEVEL`],
/// 4-module quiet zone, one `M x y h1v1H x V y` path segment per dark module), and
/// instructions for restoring with `borg key import REPO FILE` or `borg key import --paper`.
/// It references nothing external and contains no script. Unlike borg's page the output is
/// rborg's own, so it is not byte-identical to borg's; what is shared is the key file text.
pub fn export_qr_html(repository_id: &[u8], key_text: &str) -> Vec<u8> {
    let data = export_keyfile(repository_id, key_text);
    let repo_hex = hex::encode(repository_id);
    let qr = match qr_svg(&data) {
        Some(svg) => format!(
            "<figure class=\"qr\">\n{svg}\n<figcaption>QR code of the key file text above \
             ({} characters).</figcaption>\n</figure>\n",
            data.len()
        ),
        None => "<p class=\"qr\">The key file text is too long for one QR code; \
                 use the text above.</p>\n"
            .to_string(),
    };
    let mut page = String::with_capacity(data.len() * 8 + 4096);
    page.push_str(QR_HTML_HEAD);
    page.push_str(&format!(
        "<h1>borg key backup</h1>\n<p>Repository ID: <code>{}</code></p>\n\
         <h2>Key file</h2>\n<pre id=\"keyfile\">{}</pre>\n{qr}",
        html_escape(&repo_hex),
        html_escape(&data)
    ));
    page.push_str(QR_HTML_INSTRUCTIONS);
    page.into_bytes()
}

/// The QR code of `data` as an SVG element (without the XML declaration, so it can be
/// inlined in HTML), or `None` if `data` exceeds the capacity of a QR code.
fn qr_svg(data: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(data, QR_EC_LEVEL)
        .or_else(|_| QrCode::with_error_correction_level(data, EcLevel::L))
        .ok()?;
    let svg = code
        .render::<svg::Color>()
        .quiet_zone(true)
        .module_dimensions(1, 1)
        .build();
    let start = svg.find("<svg")?;
    Some(svg[start..].to_string())
}

/// Escape text for HTML element content and attribute values.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const QR_HTML_HEAD: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>borg key backup</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 48em; }
pre { font-family: monospace; font-size: 10pt; line-height: 1.3; white-space: pre;
      border: 1px solid #000; padding: 0.5em; overflow-x: auto; }
figure.qr { margin: 1.5em 0; page-break-inside: avoid; break-inside: avoid; }
figure.qr svg { display: block; width: 90mm; height: 90mm; }
@media print { body { margin: 0; } }
</style>
</head>
<body>
"#;

const QR_HTML_INSTRUCTIONS: &str = r#"<h2>How to restore</h2>
<ol>
<li>Type the key file text above into a plain text file, exactly as shown (line breaks
included; the first line starts with <code>BORG_KEY</code>), or scan the QR code, which
contains the same text, and save the result to a file.</li>
<li>Run <code>borg key import /path/to/repo FILE</code> with that file.</li>
</ol>
<p>For a copy that is easier to type by hand, with a checksum on every line, use
<code>borg key export --paper /path/to/repo</code> and restore it with
<code>borg key import --paper /path/to/repo</code>, which prompts for each line.</p>
<p>The key is still protected by its passphrase: you also need the passphrase (if one was
set) to use the restored key. Keep this printout safe.</p>
</body>
</html>
"#;

/// `--paper` export text.
pub fn export_paperkey(repository_id: &[u8], key_text: &str) -> Result<String> {
    let binary = keyblob::text_to_blob(key_text)?;
    let mut out = String::from("To restore key use borg key import --paper /path/to/repo\n\n");
    out.push_str("BORG PAPER KEY v1\n");
    let lines = binary.len().div_ceil(18);
    let mut repoid = hex::encode(repository_id);
    repoid.truncate(18);
    let complete = sha256_trunc(&binary, 12);
    let idsum = sha256_trunc(format!("{lines}/{repoid}/{complete}").as_bytes(), 2);
    out.push_str(&format!(
        "id: {lines} / {} / {} - {idsum}\n",
        grouped(&repoid),
        grouped(&complete)
    ));
    for (i, chunk) in binary.chunks(18).enumerate() {
        let idx = i + 1;
        let mut d = (idx as u16).to_be_bytes().to_vec();
        d.extend_from_slice(chunk);
        out.push_str(&format!(
            "{idx:2}: {} - {}\n",
            grouped(&hex::encode(chunk)),
            sha256_trunc(&d, 2)
        ));
    }
    Ok(out)
}

/// Import a key file export (`borg key import`): checks the `BORG_KEY <repo id>` header and
/// returns the key text to store (everything after the header line).
pub fn import_keyfile(repository_id: &[u8], text: &str) -> Result<String> {
    let first = format!("{FILE_ID} {}\n", hex::encode(repository_id));
    match text.strip_prefix(&first) {
        Some(rest) => Ok(rest.to_string()),
        None if text.starts_with(FILE_ID) => Err(Error::RepoIdMismatch),
        None => Err(Error::NotABorgKeyFile),
    }
}

/// Incremental paper-key import, line by line as borg prompts for them, so a CLI can
/// re-prompt on a bad line. Error texts are borg's prompts.
#[derive(Debug)]
pub struct PaperKeyImport {
    repoid18: String,
    lines: Option<usize>,
    complete: String,
    result: Vec<u8>,
    idx: usize,
}

/// What the importer needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum PaperKeyState {
    /// Waiting for the `id:` line.
    NeedIdLine,
    /// Waiting for data line `n` (1-based).
    NeedLine(usize),
    /// Complete; the key text to store.
    Done(String),
}

impl PaperKeyImport {
    /// Start an import for the repository `repository_id`.
    pub fn new(repository_id: &[u8]) -> Self {
        let mut repoid18 = hex::encode(repository_id);
        repoid18.truncate(18);
        PaperKeyImport {
            repoid18,
            lines: None,
            complete: String::new(),
            result: Vec::new(),
            idx: 1,
        }
    }

    /// What is expected next.
    pub fn state(&self) -> PaperKeyState {
        match self.lines {
            None => PaperKeyState::NeedIdLine,
            Some(_) => PaperKeyState::NeedLine(self.idx),
        }
    }

    /// Feed the text typed after an `id: ` or `NN: ` prompt (a leading `id:`/`NN:` label is
    /// also accepted, so whole export lines can be pasted).
    pub fn feed(&mut self, line: &str) -> Result<PaperKeyState> {
        let mut l: String = line.chars().filter(|c| *c != ' ').collect();
        if let Some((label, rest)) = l.split_once(':') {
            if label == "id" || label.parse::<usize>().is_ok() {
                l = rest.to_string();
            }
        }
        let l = l.trim_end_matches(['\n', '\r']).to_string();
        let (data, checksum) = l
            .split_once('-')
            .filter(|(_, c)| !c.contains('-'))
            .ok_or_else(|| {
                Error::PaperKey("each line must contain exactly one '-', try again".into())
            })?;
        let Some(lines) = self.lines else {
            let parts: Vec<&str> = data.split('/').collect();
            if parts.len() != 3 {
                return Err(Error::PaperKey(
                    "the id line must contain exactly three '/', try again".into(),
                ));
            }
            if sha256_trunc(data.to_lowercase().as_bytes(), 2) != checksum {
                return Err(Error::PaperKey(
                    "line checksum did not match, try same line again".into(),
                ));
            }
            let n: usize = parts[0]
                .parse()
                .map_err(|_| Error::PaperKey("internal error while parsing length".into()))?;
            if parts[1] != self.repoid18 {
                return Err(Error::RepoIdMismatch);
            }
            self.lines = Some(n);
            self.complete = parts[2].to_string();
            return Ok(self.state());
        };
        let part = hex::decode(data).map_err(|_| {
            Error::PaperKey("only characters 0-9 and a-f and '-' are valid, try again".into())
        })?;
        let mut d = (self.idx as u16).to_be_bytes().to_vec();
        d.extend_from_slice(&part);
        if sha256_trunc(&d, 2) != checksum {
            return Err(Error::PaperKey(format!(
                "line checksum did not match, try line {} again",
                self.idx
            )));
        }
        self.result.extend_from_slice(&part);
        if self.idx < lines {
            self.idx += 1;
            return Ok(self.state());
        }
        if sha256_trunc(&self.result, 12) != self.complete {
            // borg restarts from the id line
            self.lines = None;
            self.result.clear();
            self.idx = 1;
            return Err(Error::PaperKey(
                "The overall checksum did not match, retry or enter a blank line to abort.".into(),
            ));
        }
        let text = keyblob::blob_to_text(&self.result) + "\n";
        Ok(PaperKeyState::Done(text))
    }
}

/// Import a whole `--paper` export text at once (lines other than `id:`/`NN:` are skipped).
pub fn import_paperkey(repository_id: &[u8], text: &str) -> Result<String> {
    let mut imp = PaperKeyImport::new(repository_id);
    for line in text.lines() {
        let t = line.trim_start();
        let is_data = t.starts_with("id:")
            || t.split_once(':')
                .is_some_and(|(n, _)| !n.is_empty() && n.trim().parse::<usize>().is_ok());
        if !is_data {
            continue;
        }
        if let PaperKeyState::Done(s) = imp.feed(t)? {
            return Ok(s);
        }
    }
    Err(Error::PaperKey("incomplete paper key".into()))
}

/// `borg key change-passphrase`: open `key_text` (repokey string or key-file body) with `old`
/// and return it re-protected with `new` (fresh salt). Wrong `old` gives
/// [`Error::PassphraseWrong`].
pub fn change_passphrase(
    key_type: crate::KeyType,
    key_text: &str,
    old: &crate::Passphrase,
    new: &crate::Passphrase,
) -> Result<String> {
    let key = crate::Key::from_key_text(key_type, key_text, old, true)?;
    Ok(key.to_key_text(new))
}
