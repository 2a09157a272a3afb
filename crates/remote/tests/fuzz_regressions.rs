//! Replays the inputs of the `rpc_server` fuzz target (`fuzz/`): the seeds
//! (`testdata/fuzz/rpc_server/seeds/`, written by `testdata/fuzz/make_rpc_server_seeds.py`) and every input that
//! once crashed or hung the server (`testdata/fuzz/rpc_server/crashes/`), each as the complete
//! client stream of one `borg serve` session, set up as the fuzz target sets it up (a scratch
//! working directory that is also the `--restrict-to-path`).
//!
//! Each replay must end (within seconds), and everything the server wrote must be a sequence of
//! well-formed borg replies: a dict with the request's `i` and either `r` or the
//! `exception_*` fields, or a legacy 4-tuple. Seeds named `ok-*` are valid sessions: they must
//! end cleanly with no error reply and as many replies as requests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rborg_remote::msgpack::{decode, Value, CLIENT_LIMITS, SERVER_LIMITS};
use rborg_remote::server::{serve_bytes, ServeOptions};

fn inputs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fuzz/rpc_server");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every value of a msgpack stream (`None` if it does not decode to the end).
fn values(mut buf: &[u8], limits: &rborg_remote::msgpack::Limits) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (v, n) = decode(buf, limits).ok()??;
        out.push(v);
        buf = &buf[n..];
    }
    Some(out)
}

/// The msgid of a well-formed reply, and whether it is an error.
fn reply_shape(v: &Value) -> Option<(Value, bool)> {
    match v {
        Value::Map(_) => {
            let id = v.get("i")?.clone();
            if v.get("r").is_some() {
                return Some((id, false));
            }
            let class = v.get("exception_class")?.as_bytes()?;
            let short = v.get("exception_short")?;
            (!class.is_empty() && matches!(short, Value::Array(_))).then_some((id, true))
        }
        Value::Array(t) if t.len() == 4 && t[0] == Value::Int(1) => {
            Some((t[1].clone(), t[2] != Value::Nil))
        }
        _ => None,
    }
}

/// Replies some inputs must get: (file, msgid, borg exception class or `None` for a result).
const EXPECTED: &[(&str, i128, Option<&str>)] = &[
    // calls before open fail like borg's `getattr(None, ...)`
    ("errors.bin", 1, Some("AttributeError")),
    ("errors.bin", 3, Some("PathNotAllowed")),
    ("errors.bin", 4, Some("DoesNotExist")),
    ("errors.bin", 5, Some("InvalidRPCMethod")),
    ("hostile-bad-fields.bin", 3, Some("TypeError")),
    // `..` and `~user` escapes of the restriction
    ("hostile-bad-fields.bin", 4, Some("PathNotAllowed")),
    ("hostile-bad-fields.bin", 5, Some("PathNotAllowed")),
    // an absurd lock_wait is ignored, the open works
    ("hostile-bad-fields.bin", 6, None),
    ("hostile-bad-fields.bin", 10, Some("InvalidRPCMethod")),
];

#[test]
fn fuzz_inputs_replay_without_crash() {
    let files = inputs();
    assert!(
        files
            .iter()
            .filter(|f| f.to_string_lossy().contains("ok-"))
            .count()
            >= 2,
        "the seed corpus is missing: {files:?}"
    );
    let scratch = tempfile::tempdir().unwrap();
    let before = std::env::current_dir().unwrap();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read(file).unwrap();
        let work = scratch.path().join("w");
        std::fs::create_dir(&work).unwrap();
        std::env::set_current_dir(&work).unwrap();
        let opts = ServeOptions {
            restrict_to_paths: vec![work.clone()],
            storage_quota: Some(64 << 20),
            ..ServeOptions::default()
        };
        let start = Instant::now();
        let (stdout, _stderr, result) = serve_bytes(&input, &opts);
        let took = start.elapsed();
        std::env::set_current_dir(&before).unwrap();
        std::fs::remove_dir_all(&work).unwrap();
        assert!(took < Duration::from_secs(10), "{name}: took {took:?}");

        let replies = values(&stdout, &CLIENT_LIMITS)
            .unwrap_or_else(|| panic!("{name}: the server wrote something that is not msgpack"));
        let mut errors = 0;
        for r in &replies {
            let (_, is_error) =
                reply_shape(r).unwrap_or_else(|| panic!("{name}: malformed reply {r:?}"));
            errors += usize::from(is_error);
        }
        for (file, msgid, class) in EXPECTED {
            if name == *file {
                let reply = replies
                    .iter()
                    .find(|r| r.get("i") == Some(&Value::Int(*msgid)))
                    .unwrap_or_else(|| panic!("{name}: no reply to {msgid}"));
                let got = reply
                    .get("exception_class")
                    .and_then(Value::as_bytes)
                    .map(|c| String::from_utf8_lossy(c).into_owned());
                assert_eq!(got.as_deref(), *class, "{name}: reply to {msgid}");
            }
        }
        if name.starts_with("ok-") {
            let requests = values(&input, &SERVER_LIMITS).expect("seeds are valid msgpack");
            assert!(result.is_ok(), "{name}: {result:?}");
            assert_eq!(errors, 0, "{name}: {replies:?}");
            assert_eq!(replies.len(), requests.len(), "{name}");
            // replies answer the requests in order
            for (q, r) in requests.iter().zip(&replies) {
                assert_eq!(q.get("i"), r.get("i"), "{name}");
            }
        }
        eprintln!(
            "{name}: {} bytes in, {} replies ({errors} errors), {:?}, {took:?}",
            input.len(),
            replies.len(),
            result.as_ref().map_err(|e| e.to_string())
        );
    }
}
