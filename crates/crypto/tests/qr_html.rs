//! Properties of rborg's own `borg key export --qr-html` page
//! ([`keymanager::export_qr_html`]): it carries the exact key file text, one inline SVG QR
//! code whose module matrix is the QR code of that text, nothing external, and the text
//! taken back out of the page imports with [`keymanager::import_keyfile`].

use qrcode::render::svg;
use qrcode::{Color, QrCode};
use rborg_crypto::keymanager::{self, QR_EC_LEVEL};
use rborg_crypto::{Key, KeyType, Passphrase};
use serde_json::Value as J;

/// (repository id, key text) pairs: every encrypted mode's key text as written by borg 1.2.4
/// (from the committed vectors) plus a freshly created rborg repokey.
fn cases() -> Vec<(Vec<u8>, String)> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/crypto/vectors.json"
    );
    let v: J = serde_json::from_str(&std::fs::read_to_string(p).expect("vectors.json")).unwrap();
    let mut out = Vec::new();
    for m in v["modes"].as_array().unwrap() {
        if m["mode"] == "none" {
            continue;
        }
        let repo = hex::decode(m["repository_id"].as_str().unwrap()).unwrap();
        let text = m["key_text"].as_str().unwrap();
        // keyfile modes store the file with its BORG_KEY header; the export takes the body
        let body = match text.split_once('\n') {
            Some((first, rest)) if first.starts_with("BORG_KEY ") => rest,
            _ => text,
        };
        out.push((repo, body.to_string()));
    }
    let repo = [0x5a; 32];
    let key = Key::create(KeyType::Repokey, repo);
    out.push((
        repo.to_vec(),
        key.to_repokey_string(&Passphrase::new("qr test")),
    ));
    assert_eq!(out.len(), 7);
    out
}

fn html_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The raw (still escaped) content of `<pre id="keyfile">`.
fn pre_content(page: &str) -> &str {
    let open = "<pre id=\"keyfile\">";
    let start = page.find(open).expect("keyfile <pre>") + open.len();
    let len = page[start..].find("</pre>").expect("</pre>");
    &page[start..start + len]
}

/// The one inline `<svg>…</svg>` of the page.
fn svg_of(page: &str) -> &str {
    assert_eq!(page.matches("<svg").count(), 1, "exactly one <svg>");
    assert_eq!(page.matches("</svg>").count(), 1);
    let start = page.find("<svg").unwrap();
    let end = page.find("</svg>").unwrap() + "</svg>".len();
    &page[start..end]
}

fn attr<'a>(tag: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=\"");
    let start = tag.find(&key).unwrap_or_else(|| panic!("{name}=")) + key.len();
    let len = tag[start..].find('"').unwrap();
    &tag[start..start + len]
}

fn num(s: &str) -> usize {
    s.parse().unwrap_or_else(|_| panic!("number {s:?}"))
}

/// Rasterise the SVG's dark path (absolute `M x y h w v h H x V y` rectangles) onto the
/// viewBox grid: `grid[y][x]` is true for a dark module.
fn svg_modules(svg: &str) -> Vec<Vec<bool>> {
    let vb: Vec<usize> = attr(svg, "viewBox").split(' ').map(num).collect();
    assert_eq!(&vb[..2], &[0, 0]);
    assert_eq!(vb[2], vb[3], "square");
    let n = vb[2];
    let path_at = svg.find("<path").expect("<path");
    let path = &svg[path_at..];
    assert_eq!(attr(path, "fill"), "#000");
    let mut grid = vec![vec![false; n]; n];
    for seg in attr(path, "d").split('M').filter(|s| !s.is_empty()) {
        // "x y h w v h H x V y"
        let (xy, rest) = seg.split_once('h').expect("h");
        let (x, y) = xy.split_once(' ').unwrap();
        let (w, rest) = rest.split_once('v').expect("v");
        let (h, rest) = rest.split_once('H').expect("H");
        let (x2, y2) = rest.split_once('V').expect("V");
        let (x, y, w, h) = (num(x), num(y), num(w), num(h));
        assert_eq!((num(x2), num(y2)), (x, y), "rectangle closes at its origin");
        for row in grid.iter_mut().skip(y).take(h) {
            for cell in row.iter_mut().skip(x).take(w) {
                assert!(!*cell, "module drawn twice");
                *cell = true;
            }
        }
        assert!(x + w <= n && y + h <= n, "rectangle inside the viewBox");
    }
    grid
}

#[test]
fn page_carries_exact_key_file_text_and_imports_back() {
    for (repo, body) in cases() {
        let expected = keymanager::export_keyfile(&repo, &body);
        let page = String::from_utf8(keymanager::export_qr_html(&repo, &body)).expect("utf-8");
        let text = html_unescape(pre_content(&page));
        assert_eq!(text, expected, "unescaped <pre> is the key file text");
        let imported = keymanager::import_keyfile(&repo, &text).unwrap();
        assert_eq!(imported.trim_end(), body.trim_end());
        let mut other = repo.clone();
        other[31] ^= 0x80;
        assert!(keymanager::import_keyfile(&other, &text).is_err());
        // restore instructions are on the page
        assert!(page.contains("borg key import /path/to/repo FILE"));
        assert!(page.contains("borg key import --paper /path/to/repo"));
        assert!(page.contains(&hex::encode(&repo)));
    }
}

#[test]
fn page_is_self_contained() {
    for (repo, body) in cases() {
        let page = String::from_utf8(keymanager::export_qr_html(&repo, &body)).unwrap();
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.trim_end().ends_with("</html>"));
        let lower = page.to_ascii_lowercase();
        for bad in [
            "<script", "src=", "href=", "url(", "@import", "<link", "<iframe",
        ] {
            assert!(!lower.contains(bad), "page contains {bad}");
        }
        // the only URL is the SVG namespace name, which is never fetched
        assert_eq!(lower.matches("http").count(), 1);
        assert!(page.contains("xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(!page.contains("<?xml"), "no XML declaration inside HTML");
    }
}

#[test]
fn svg_is_the_qr_code_of_the_key_file_text() {
    for (repo, body) in cases() {
        let data = keymanager::export_keyfile(&repo, &body);
        let page = String::from_utf8(keymanager::export_qr_html(&repo, &body)).unwrap();
        let svg = svg_of(&page);

        // module matrix read from the page's SVG == matrix of a fresh QR code of the text
        let code = QrCode::with_error_correction_level(data.as_bytes(), QR_EC_LEVEL).unwrap();
        let w = code.width();
        let colors = code.to_colors();
        let grid = svg_modules(svg);
        const QUIET: usize = 4;
        assert_eq!(grid.len(), w + 2 * QUIET);
        let mut dark = 0;
        for (y, row) in grid.iter().enumerate() {
            for (x, &cell) in row.iter().enumerate() {
                let inside = (QUIET..QUIET + w).contains(&x) && (QUIET..QUIET + w).contains(&y);
                let want = inside && colors[(y - QUIET) * w + (x - QUIET)] == Color::Dark;
                assert_eq!(cell, want, "module ({x}, {y})");
                dark += usize::from(cell);
            }
        }
        assert!(dark > w * w / 4, "a real QR code is roughly half dark");

        // and it is the qrcode crate's own rendering of that code
        let fresh = code
            .render::<svg::Color>()
            .quiet_zone(true)
            .module_dimensions(1, 1)
            .build();
        assert!(fresh.ends_with(svg), "page svg equals a fresh rendering");

        // a different text gives a different matrix (the comparison is not vacuous)
        let other = QrCode::with_error_correction_level(format!("{data} ").as_bytes(), QR_EC_LEVEL)
            .unwrap();
        assert_ne!(other.to_colors(), colors);
    }
}

#[test]
fn html_special_characters_round_trip() {
    let repo = [1u8; 32];
    let body = "a<b>&c\"d'e&amp;f</pre><svg>\n";
    let page = String::from_utf8(keymanager::export_qr_html(&repo, body)).unwrap();
    let pre = pre_content(&page);
    assert!(!pre.contains('<') && !pre.contains('>'));
    assert_eq!(
        html_unescape(pre),
        keymanager::export_keyfile(&repo, body),
        "escaped text round-trips"
    );
    // the injected "<svg>" stays text: still exactly one svg element
    svg_of(&page);
}

#[test]
fn text_too_long_for_a_qr_code_still_gives_a_page() {
    let repo = [2u8; 32];
    let body = "A".repeat(8000) + "\n";
    let page = String::from_utf8(keymanager::export_qr_html(&repo, &body)).unwrap();
    assert_eq!(page.matches("<svg").count(), 0);
    assert!(page.contains("too long for one QR code"));
    assert_eq!(
        html_unescape(pre_content(&page)),
        keymanager::export_keyfile(&repo, &body)
    );
}
