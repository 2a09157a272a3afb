//! `rborg borg prune` against `borg prune` (borg 1.2.4) on one synthetic history of more than
//! 1000 archives: irregular timestamps over several years (bursts within the same hour and
//! minute, equal timestamps, checkpoint archives, three name prefixes) in a time zone with
//! DST, and more than 20 retention policies mixing every rule, `--keep-within`, `--prefix`
//! and `--glob-archives`. For each policy, both dry runs with `--list` must keep (by the same
//! rule and number) and prune exactly the same archives. Then a real prune by rborg leaves
//! exactly the archives borg's dry run kept, and `borg check` finds the repository intact.
//!
//! The history is written in-process (one archive made by borg, its metadata object cloned
//! under new names and times through the library), which keeps the test to seconds.
//!
//! These tests need `/usr/bin/borg`. Without it they print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1` (CI sets it), in which case they fail.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use rborg_archive::archive::{fetch_object, ArchiveMeta};
use rborg_archive::keys::{load_key, PassphraseProvider};
use rborg_archive::manifest::{put_metadata_object, read_manifest_object, Operation};
use rborg_archive::{ArchiveEntry, Manifest};
use rborg_crypto::{msgpack, Passphrase, TamContext};
use rborg_repository::{LocalRepository, OpenOptions, Repository};
use rborg_testkit::{borg_available, borg_command, ok, BORG};
use rmpv::Value;

const PASSPHRASE: &str = "prune-test-pw";
/// A zone with DST and a non-whole-hour offset, so local period keys differ from UTC ones.
const TZ: &str = "Australia/Adelaide";
/// Synthetic archives besides the one borg makes.
const HISTORY: usize = 1100;

fn command(dir: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = borg_command(program, args, dir, &dir.join("home"), PASSPHRASE);
    cmd.env("TZ", TZ)
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8");
    cmd
}

fn borg(dir: &Path, args: &[&str]) -> Output {
    command(dir, BORG, args).output().unwrap()
}

fn rborg(dir: &Path, args: &[&str]) -> Output {
    let mut full = vec!["borg"];
    full.extend_from_slice(args);
    command(dir, env!("CARGO_BIN_EXE_rborg"), &full)
        .output()
        .unwrap()
}

/// The test's passphrase, whoever asks.
struct Fixed;

impl PassphraseProvider for Fixed {
    fn environment_passphrase(&mut self) -> rborg_archive::Result<Option<Passphrase>> {
        Ok(Some(Passphrase::new(PASSPHRASE.to_string())))
    }
    fn ask(&mut self, _prompt: &str) -> rborg_archive::Result<Passphrase> {
        Ok(Passphrase::new(PASSPHRASE.to_string()))
    }
    fn new_passphrase(&mut self) -> rborg_archive::Result<Passphrase> {
        Ok(Passphrase::new(PASSPHRASE.to_string()))
    }
}

/// A small deterministic generator (64-bit LCG, high bits).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` (UTC) of Unix time `secs` + `micros`, as borg stores it.
fn iso_utc(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The synthetic history, newest first: (name, time). Times lie half an hour plus up to 20
/// minutes before a whole number of hours before `now`, so the `--keep-within` limits (whole
/// hours before the moment each prune runs) never fall between two runs' views.
fn history(now: i64) -> Vec<(String, String)> {
    let mut rng = Lcg(0x5eed_0fb0_a9a9);
    let mut hours = 0i64;
    let mut out: Vec<(String, String)> = Vec::new();
    for i in 0..HISTORY {
        if i > 0 && rng.next(10) >= 3 {
            // 30% stay in the same hour (bursts), the rest step back 1..72 hours
            hours += 1 + rng.next(72) as i64;
        }
        let prefix = ["host-a-", "host-b-", "db-"][i % 3];
        let mut name = format!("{prefix}{i:04}");
        if i % 53 == 0 {
            name.push_str(".checkpoint");
        } else if i % 71 == 0 {
            name.push_str(".checkpoint.1");
        }
        let time = if i % 250 == 7 {
            // an exact tie with the previous archive: order then follows the name
            out[i - 1].1.clone()
        } else {
            let secs = now - hours * 3600 - 1800 - rng.next(1200) as i64;
            iso_utc(secs, rng.next(1_000_000) as u32)
        };
        out.push((name, time));
    }
    out
}

/// Adds the history to the repository in `dir`: each archive is the metadata of `base` with
/// another name and time (sharing its items), stored with a fresh TAM.
fn write_history(dir: &Path, history: &[(String, String)]) {
    let mut repo = LocalRepository::open(&dir.join("repo"), &OpenOptions::exclusive()).unwrap();
    let cdata = read_manifest_object(&mut repo).unwrap();
    let env = |_: &str| -> Option<String> { None };
    let key = load_key(&mut repo, &cdata, &mut Fixed, &env).unwrap().key;
    let mut manifest = Manifest::load(&mut repo, &key, &[Operation::Write], "repo").unwrap();
    let base = manifest.archives["base"].clone();
    let data = fetch_object(&mut repo, &key, &base.id).unwrap();
    let meta = ArchiveMeta::decode(&key, &base.id, &data, false).unwrap();
    let template = meta.raw.as_map().cloned().unwrap();
    let nonce = dir.join("nonce");
    for (name, time) in history {
        let mut map = template.clone();
        map.retain(|(k, _)| msgpack::key_bytes(k) != b"tam");
        for (k, v) in map.iter_mut() {
            match msgpack::key_bytes(k) {
                b"name" => *v = Value::from(name.as_str()),
                b"time" | b"time_end" => *v = Value::from(time.as_str()),
                _ => {}
            }
        }
        let plain =
            rborg_crypto::pack_and_authenticate(&key, &Value::Map(map), TamContext::Archive)
                .unwrap();
        let id = key.id_hash(&plain);
        put_metadata_object(&mut repo, &key, &id, &plain, nonce.clone()).unwrap();
        manifest.archives.insert(
            name.clone(),
            ArchiveEntry {
                id,
                time: time.clone(),
            },
        );
    }
    manifest.write(&mut repo, &key, nonce).unwrap();
    repo.commit(false, 0.1).unwrap();
}

/// The `--list` lines of a prune ("Keeping ...", "Would prune: ...", "Pruning ...").
fn list_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| {
            l.starts_with("Keeping ") || l.starts_with("Would prune:") || l.starts_with("Pruning ")
        })
        .map(str::to_string)
        .collect()
}

/// (decision, archive name) of each `--list` line: the decision is the message before the
/// 40-column padding, the name the first word after it.
fn parse(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| {
            let (message, rest) = l.split_at(40.min(l.len()));
            let name = rest.split_whitespace().next().unwrap_or_default();
            (message.trim_end().to_string(), name.to_string())
        })
        .collect()
}

const POLICIES: &[&[&str]] = &[
    &["--keep-daily=7"],
    &["--keep-last=10"],
    &["--keep-secondly=5", "--keep-minutely=5"],
    &["-H", "24"],
    &["-d", "14", "-w", "8", "-m", "12", "-y", "3"],
    &["--keep-within=2d"],
    &["--keep-within=3w", "-m", "6"],
    &["-w", "52"],
    &["-m", "36"],
    &["-y", "10"],
    &["-d", "1000"],
    &["--prefix=host-a-", "-d", "7", "-w", "4"],
    &["--glob-archives=*-b-*", "-H", "12", "-d", "7"],
    &["-a", "db-*", "-m", "3", "--keep-within", "1m"],
    &["--keep-minutely=30", "-H", "10"],
    &["--keep-daily=-1"],
    &["-y", "1"],
    &["-d", "3", "-m", "2", "-y", "1"],
    &["--keep-within=1y", "-y", "5"],
    &["-P", "db-", "--keep-last", "3"],
    &["-a", "host-*", "-w", "10", "-m", "10"],
    &[
        "--keep-within=10H",
        "--keep-last=2",
        "-d",
        "2",
        "-w",
        "2",
        "-m",
        "2",
        "-y",
        "2",
    ],
    &["-P", "nothing-", "-d", "1"],
    &["-a", "host-a-*", "--keep-weekly=1"],
    &["--keep-hourly=100", "--keep-weekly=20", "--keep-yearly=-1"],
    &["-P", "db-", "-m", "200"],
    &["-a", "host-b-*", "-y", "9", "-d", "3"],
];

#[test]
fn prune_matches_borg_on_a_long_history() {
    if !borg_available("prune interop test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/file"), b"prune me\n").unwrap();
    ok(&borg(dir, &["init", "-e", "repokey", "repo"]), "borg init");
    ok(
        &borg(
            dir,
            &[
                "create",
                "--timestamp",
                "2000-01-01T00:00:00",
                "repo::base",
                "src",
            ],
        ),
        "borg create",
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let history = history(now);
    write_history(dir, &history);

    let mut all_lines = Vec::new();
    for policy in POLICIES {
        let mut args = vec!["prune", "--dry-run", "--list", "repo"];
        args.extend_from_slice(policy);
        let b = borg(dir, &args);
        ok(&b, &format!("borg {args:?}"));
        let r = rborg(dir, &args);
        ok(&r, &format!("rborg {args:?}"));
        let (bl, rl) = (list_lines(&b), list_lines(&r));
        assert_eq!(parse(&bl), parse(&rl), "decisions differ for {policy:?}");
        // the whole lines (local time, id) are the same too
        assert_eq!(bl, rl, "--list lines differ for {policy:?}");
        all_lines.extend(bl.iter().cloned());
        assert!(
            bl.len() > 1 || policy.contains(&"nothing-"),
            "{policy:?} selected nothing"
        );
    }
    // the history exercises every kind of decision
    for needle in [
        "Would prune:",
        "Keeping checkpoint archive:",
        "[oldest] #",
        "(rule: within #",
        "(rule: secondly #",
        "(rule: minutely #",
        "(rule: hourly #",
        "(rule: daily #",
        "(rule: weekly #",
        "(rule: monthly #",
        "(rule: yearly #",
    ] {
        assert!(
            all_lines.iter().any(|l| l.contains(needle)),
            "no policy produced {needle:?}"
        );
    }

    // A real prune by rborg removes exactly what borg's dry run would, and borg is happy.
    let policy = [
        "--keep-within=2d",
        "-d",
        "7",
        "-w",
        "4",
        "-m",
        "6",
        "-y",
        "2",
    ];
    let mut dry = vec!["prune", "--dry-run", "--list", "repo"];
    dry.extend_from_slice(&policy);
    let plan = parse(&list_lines(&borg(dir, &dry)));
    let mut kept: Vec<String> = plan
        .iter()
        .filter(|(m, _)| m.starts_with("Keeping"))
        .map(|(_, n)| n.clone())
        .collect();
    let doomed = plan.len() - kept.len();
    assert!(doomed > 900, "only {doomed} archives to prune");
    let mut real = vec!["prune", "--list", "--stats", "repo"];
    real.extend_from_slice(&policy);
    let out = rborg(dir, &real);
    ok(&out, "rborg prune");
    let done = parse(&list_lines(&out));
    assert_eq!(done.len(), plan.len());
    assert_eq!(
        done.iter()
            .filter(|(m, _)| m.starts_with("Pruning archive"))
            .count(),
        doomed
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Deleted data:"));
    ok(
        &borg(dir, &["check", "repo"]),
        "borg check after rborg prune",
    );
    let listed = ok(
        &borg(dir, &["list", "--short", "--consider-checkpoints", "repo"]),
        "borg list",
    );
    let mut left: Vec<String> = listed.lines().map(str::to_string).collect();
    left.sort();
    kept.sort();
    assert_eq!(left, kept);
}

#[test]
fn prune_requires_a_rule_like_borg() {
    if !borg_available("prune rule test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(&borg(dir, &["init", "-e", "none", "repo"]), "borg init");
    let last = |o: &Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    // no rule at all: borg's error message and exit code 2
    for args in [&["prune", "repo"][..], &["prune", "repo", "--keep-daily=0"]] {
        let (b, r) = (borg(dir, args), rborg(dir, args));
        assert_eq!(b.status.code(), Some(2));
        assert_eq!(r.status.code(), Some(2), "exit code of {args:?}");
        assert_eq!(last(&b), last(&r), "message of {args:?}");
    }
    // a bad --keep-within is a usage error
    for args in [
        &["prune", "repo", "--keep-within=0d"][..],
        &["prune", "repo", "--keep-within=1s"],
    ] {
        let (b, r) = (borg(dir, args), rborg(dir, args));
        assert_eq!(b.status.code(), r.status.code(), "exit code of {args:?}");
    }
}

/// Copies a directory tree (the repository, and the home with its security and cache dirs).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn real_prune_output_and_stats_match_borg() {
    if !borg_available("prune stats test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (b_dir, r_dir) = (tmp.path().join("b"), tmp.path().join("r"));
    std::fs::create_dir_all(b_dir.join("src")).unwrap();
    std::fs::write(b_dir.join("src/big"), rborg_testkit::noise(7, 200_000)).unwrap();
    ok(
        &borg(&b_dir, &["init", "-e", "repokey", "repo"]),
        "borg init",
    );
    for (i, ts) in [
        "2021-03-01T10:00:00",
        "2021-03-01T12:00:00",
        "2021-03-02T09:00:00",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(b_dir.join("src/small"), format!("version {i}\n")).unwrap();
        let name = format!("repo::pc-{i}");
        ok(
            &borg(&b_dir, &["create", "--timestamp", ts, &name, "src"]),
            "borg create",
        );
    }
    ok(
        &borg(&b_dir, &["create", "repo::other", "src"]),
        "borg create",
    );
    // the same repository and client state for both; paths differ, so the copy is
    // "relocated" (the warning is left out of the comparison)
    copy_tree(&b_dir, &r_dir);
    let args = [
        "prune",
        "--list",
        "--stats",
        "--save-space",
        "-P",
        "pc-",
        "-d",
        "1",
        "repo",
    ];
    let relocated = |o: &Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter(|l| !l.contains("previously located at") && !l.starts_with("Do you want"))
            .map(str::to_string)
            .collect()
    };
    let b = command(&b_dir, BORG, &args).output().unwrap();
    ok(&b, "borg prune");
    let mut full = vec!["borg"];
    full.extend_from_slice(&args);
    let r = command(&r_dir, env!("CARGO_BIN_EXE_rborg"), &full)
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .output()
        .unwrap();
    ok(&r, "rborg prune");
    let expected = relocated(&b);
    assert!(expected.iter().any(|l| l.starts_with("Deleted data:")));
    assert_eq!(expected, relocated(&r));
    // (rborg does not move the cache's `previous_location` along yet, so borg asks again)
    let borg_r = |args: &[&str]| {
        command(&r_dir, BORG, args)
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .output()
            .unwrap()
    };
    let listed = ok(&borg_r(&["list", "--short", "repo"]), "borg list");
    assert_eq!(listed, "pc-2\nother\n");
    ok(&borg_r(&["check", "repo"]), "borg check");
}
