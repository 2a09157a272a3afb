//! rborg's include/exclude patterns decide exactly as borg 1.2.4's own `borg.patterns`
//! module: every pattern of a list of tricky ones, parsed with every default style, is matched
//! against a generated set of paths by both implementations, and whole pattern files
//! (`+`/`-`/`!`/`P`/`R` lines, with and without `PATH` include arguments) must give the same
//! include decision and the same "descend into this directory" answer for every path.

use rborg_archive::patterns::{Pattern, PatternMatcher, PatternOptions, PatternStyle};
use rborg_testkit::{borg_available, python};

const STYLES: [(PatternStyle, &str); 5] = [
    (PatternStyle::Fnmatch, "FnmatchPattern"),
    (PatternStyle::Shell, "ShellPattern"),
    (PatternStyle::PathPrefix, "PathPrefixPattern"),
    (PatternStyle::PathFull, "PathFullPattern"),
    (PatternStyle::Regex, "RegexPattern"),
];

/// Patterns whose text is valid in every style, including as a regular expression.
const PATTERNS: &[&str] = &[
    "a",
    "a/",
    "a/b",
    "/a/b",
    "./a",
    "a/../b",
    "a//b/",
    ".*tmp",
    "a/.*",
    "ab",
    "[ab]/b",
    "[^a]b",
    "dir/.*/x.tmp",
    "file1",
    "ü",
    "sp ace",
    "sh:*.tmp",
    "sh:**/*.tmp",
    "sh:a/*",
    "sh:a/*/",
    "sh:**/b",
    "sh:a/**/x.tmp",
    "sh:*/file?",
    "sh:[!a]*",
    "sh:a/[a-b]b",
    "sh:**",
    "sh:?",
    "sh:[[]x]",
    "sh:[]]*",
    "sh:ü*",
    "fm:*.tmp",
    "fm:a/*",
    "fm:a/*/",
    "fm:*/file?",
    "fm:[!a]*",
    "fm:a/[a-b]b",
    "fm:[z-a]*",
    "fm:[!]]*",
    "fm:[[]x]",
    "fm:a\\b",
    "fm:?",
    "fm:a?b",
    "sh:a?b",
    "fm:a*b",
    "fm:*",
    "fm:file[0-9_]*",
    "pp:a",
    "pp:/a/b/",
    "pf:a/b",
    "pf:/dir/x.tmp",
    "re:^a/b$",
    "re:tmp$",
    "re:^(a|b)/\\1",
    "re:(?i)^A",
    "re:(?=.*x)dir",
    "re:^[^/]+$",
];

/// Pattern files; `R` roots are collected too.
const PATTERN_FILES: &[&str] = &[
    "+ a/b\n- a\n",
    "+ a/b\n! a\n",
    "# comment\n\n  - **/*.tmp  \n+ dir/x.tmp\nP fm\n- *\n",
    "P pp\n! dir\n+ a\nP re\n- ^b\nR /root\nr relative\n",
    "+ pf:a/b\n- pf:a\n- sh:a/**\n+ fm:*.tmp\n! re:ab",
    "- dir/*\n+ dir/ab\n",
];

/// `PATH` arguments given with the pattern files (borg's `add_includepaths`).
const INCLUDE_PATHS: &[&[&str]] = &[&[], &["a"], &["dir", "pf:b", "sh:*.tmp"]];

fn paths() -> Vec<String> {
    let names = [
        "a", "b", "ab", "x.tmp", "file1", "dir", ".hidden", "sp ace", "ü", "[x]", "]z",
    ];
    let mut out: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    for a in names {
        for b in names {
            out.push(format!("{a}/{b}"));
            for c in ["b", "x.tmp", "file1", "ab"] {
                out.push(format!("{a}/{b}/{c}"));
            }
        }
    }
    out.push("/a/b".into());
    out.push("//dir/x.tmp".into());
    out.push("a\\b".into());
    out
}

fn bits(v: impl IntoIterator<Item = bool>) -> String {
    v.into_iter().map(|b| if b { '1' } else { '0' }).collect()
}

/// Single patterns with every default style: one line of 0/1 per (style, pattern).
const SINGLE_SCRIPT: &str = r#"
import sys
from borg import patterns as P
pats = open(sys.argv[1], encoding='utf-8').read().split('\n')
paths = open(sys.argv[2], encoding='utf-8').read().split('\n')
for cls in sys.argv[3:]:
    fallback = getattr(P, cls)
    for p in pats:
        m = P.PatternMatcher(fallback=False)
        m.add([P.parse_pattern(p, fallback)], P.IECommand.Include)
        print(''.join('1' if m.match(x) else '0' for x in paths))
"#;

/// Pattern files (separated by NUL) with each set of include paths: per case, the roots, then
/// one line of decisions as two characters per path (included, recurse_dir).
const FILES_SCRIPT: &str = r#"
import io, sys
from borg import patterns as P
files = open(sys.argv[1], encoding='utf-8').read().split('\0')
paths = open(sys.argv[2], encoding='utf-8').read().split('\n')
includes = [l.split('\t') if l else [] for l in open(sys.argv[3], encoding='utf-8').read().split('\n')]
for f in files:
    for inc in includes:
        roots, ie = [], []
        P.load_pattern_file(io.StringIO(f), roots, ie)
        m = P.PatternMatcher()
        m.add_inclexcl(ie)
        m.add_includepaths(inc)
        print('|'.join(roots))
        out = []
        for x in paths:
            r = m.match(x)
            out.append(('1' if r else '0') + ('1' if m.recurse_dir else '0'))
        print(''.join(out))
        print('|'.join(str(p) for p in m.get_unmatched_include_patterns()))
"#;

#[test]
fn single_patterns_match_like_borg() {
    if !borg_available("pattern comparison with borg.patterns") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let paths = paths();
    std::fs::write(dir.path().join("pats"), PATTERNS.join("\n")).unwrap();
    std::fs::write(dir.path().join("paths"), paths.join("\n")).unwrap();
    let mut args = vec![
        dir.path().join("pats").display().to_string(),
        dir.path().join("paths").display().to_string(),
    ];
    args.extend(STYLES.iter().map(|(_, cls)| cls.to_string()));
    let out = python(SINGLE_SCRIPT, &args);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let mut compared = 0;
    for (style, cls) in STYLES {
        for p in PATTERNS {
            let want = lines.next().expect("a line per pattern");
            let pattern = Pattern::parse(p, style).unwrap_or_else(|e| panic!("{p}: {e}"));
            let mut m = PatternMatcher::with_fallback(false);
            m.add_include(pattern);
            let got = bits(paths.iter().map(|x| m.matches(x.as_bytes())));
            for (i, (g, w)) in got.chars().zip(want.chars()).enumerate() {
                assert_eq!(
                    g, w,
                    "pattern {p:?} (default {cls}) on path {:?}: rborg {g}, borg {w}",
                    paths[i]
                );
            }
            compared += paths.len();
        }
    }
    assert!(compared > 100_000, "only {compared} decisions compared");
}

#[test]
fn pattern_files_decide_and_recurse_like_borg() {
    if !borg_available("pattern file comparison with borg.patterns") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let paths = paths();
    std::fs::write(dir.path().join("files"), PATTERN_FILES.join("\0")).unwrap();
    std::fs::write(dir.path().join("paths"), paths.join("\n")).unwrap();
    let includes: Vec<String> = INCLUDE_PATHS.iter().map(|i| i.join("\t")).collect();
    std::fs::write(dir.path().join("includes"), includes.join("\n")).unwrap();
    let args: Vec<String> = ["files", "paths", "includes"]
        .iter()
        .map(|f| dir.path().join(f).display().to_string())
        .collect();
    let out = python(FILES_SCRIPT, &args);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    for file in PATTERN_FILES {
        for inc in INCLUDE_PATHS {
            let what = format!("pattern file {file:?} with PATHs {inc:?}");
            let mut options = PatternOptions::default();
            options.load_pattern_file(file).unwrap();
            let inc: Vec<String> = inc.iter().map(|s| s.to_string()).collect();
            let m = PatternMatcher::build(&options, &inc).unwrap();
            assert_eq!(
                options.roots.join("|"),
                lines.next().unwrap(),
                "{what}: roots"
            );
            let want = lines.next().unwrap();
            let got: String = paths
                .iter()
                .map(|x| {
                    let d = m.decide(x.as_bytes());
                    bits([d.included, d.recurse_dir])
                })
                .collect();
            for (i, (g, w)) in got
                .as_bytes()
                .chunks(2)
                .zip(want.as_bytes().chunks(2))
                .enumerate()
            {
                assert_eq!(
                    g,
                    w,
                    "{what} on path {:?}: rborg {}, borg {}",
                    paths[i],
                    String::from_utf8_lossy(g),
                    String::from_utf8_lossy(w)
                );
            }
            assert_eq!(
                m.unmatched_includes().join("|"),
                lines.next().unwrap(),
                "{what}: unmatched include paths"
            );
        }
    }
}
