//! Retention policy of `borg prune` (borg 1.2.4 `archiver.py` `do_prune`, `helpers/misc.py`
//! `prune_within` / `prune_split` / `PRUNING_PATTERNS`).
//!
//! This module only decides; it does not touch a repository. The caller lists the archives a
//! prune considers ([`select`]), asks [`plan`] what to keep and why, and deletes the rest with
//! [`crate::delete::delete_archive`].
//!
//! The rules, as borg applies them:
//!
//! * Checkpoint archives (names ending in `.checkpoint` or `.checkpoint.N`) never count for a
//!   rule. Only the newest checkpoint is kept, and only when it is newer than every regular
//!   archive (an interrupted backup after the last complete one); all others are pruned.
//! * `--keep-within H` keeps every archive whose timestamp is later than now minus `H` hours.
//! * Each period rule, in the order secondly, minutely, hourly, daily, weekly, monthly,
//!   yearly, walks the archives newest first, formats each timestamp *in local time* with the
//!   rule's `strftime` pattern and keeps the newest archive of each new period, skipping
//!   archives an earlier rule already keeps (they still open their period), until it has kept
//!   `N`. When it runs out of archives before `N`, it also keeps the oldest archive (rule
//!   name suffixed with `[oldest]`) unless that one is already kept.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use rborg_repository::ObjectId;

use crate::manifest::parse_timestamp;
use crate::patterns::{archive_glob, PatternError};
use crate::Manifest;

/// A period rule of `borg prune`, in the order borg applies them (`PRUNING_PATTERNS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeriodRule {
    /// `--keep-last` / `--keep-secondly`.
    Secondly,
    /// `--keep-minutely`.
    Minutely,
    /// `-H` / `--keep-hourly`.
    Hourly,
    /// `-d` / `--keep-daily`.
    Daily,
    /// `-w` / `--keep-weekly` (ISO 8601 weeks: `%G-%V`).
    Weekly,
    /// `-m` / `--keep-monthly`.
    Monthly,
    /// `-y` / `--keep-yearly`.
    Yearly,
}

impl PeriodRule {
    /// All rules in application order.
    pub const ALL: [PeriodRule; 7] = [
        PeriodRule::Secondly,
        PeriodRule::Minutely,
        PeriodRule::Hourly,
        PeriodRule::Daily,
        PeriodRule::Weekly,
        PeriodRule::Monthly,
        PeriodRule::Yearly,
    ];

    /// borg's rule name, as printed in "Keeping archive (rule: daily #1)".
    pub fn name(self) -> &'static str {
        match self {
            PeriodRule::Secondly => "secondly",
            PeriodRule::Minutely => "minutely",
            PeriodRule::Hourly => "hourly",
            PeriodRule::Daily => "daily",
            PeriodRule::Weekly => "weekly",
            PeriodRule::Monthly => "monthly",
            PeriodRule::Yearly => "yearly",
        }
    }

    /// The `strftime` pattern whose value identifies the period (`PRUNING_PATTERNS`).
    pub fn pattern(self) -> &'static str {
        match self {
            PeriodRule::Secondly => "%Y-%m-%d %H:%M:%S",
            PeriodRule::Minutely => "%Y-%m-%d %H:%M",
            PeriodRule::Hourly => "%Y-%m-%d %H",
            PeriodRule::Daily => "%Y-%m-%d",
            PeriodRule::Weekly => "%G-%V",
            PeriodRule::Monthly => "%Y-%m",
            PeriodRule::Yearly => "%Y",
        }
    }
}

/// The keep rules of one prune run. Counts follow borg's `type=int` options: 0 disables a
/// rule, a negative count keeps one archive of every period (and never the `[oldest]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `--keep-within`, in hours (see [`parse_interval`]).
    pub within_hours: Option<u64>,
    /// Counts of the period rules, indexed like [`PeriodRule::ALL`].
    pub counts: [i64; 7],
}

impl Policy {
    /// Sets the count of `rule`.
    pub fn set(&mut self, rule: PeriodRule, count: i64) -> &mut Self {
        self.counts[rule as usize] = count;
        self
    }

    /// The count of `rule`.
    pub fn count(&self, rule: PeriodRule) -> i64 {
        self.counts[rule as usize]
    }

    /// Whether any rule is given; borg refuses to prune without one (a count of 0 does not
    /// count).
    pub fn has_rule(&self) -> bool {
        self.within_hours.is_some_and(|h| h > 0) || self.counts.iter().any(|&c| c != 0)
    }
}

/// borg's `interval()` (`helpers/parseformat.py`): `<int><unit>` with unit `H`, `d`, `w`,
/// `m` (31 days) or `y` (365 days), converted to hours. Errors carry borg's messages.
pub fn parse_interval(text: &str) -> Result<u64, String> {
    let multiplier = match text.chars().last() {
        Some('H') => 1,
        Some('d') => 24,
        Some('w') => 24 * 7,
        Some('m') => 24 * 31,
        Some('y') => 24 * 365,
        other => {
            let unit = other.map(String::from).unwrap_or_default();
            return Err(format!(
                "Unexpected interval time unit \"{unit}\": expected one of ['H', 'd', 'w', 'm', 'y']"
            ));
        }
    };
    let number = &text[..text.len() - 1];
    // Python's int() accepts surrounding whitespace, a sign and digit group underscores
    let parsed = number.trim().replace('_', "").parse::<i64>().ok();
    match parsed.and_then(|n| n.checked_mul(multiplier)) {
        Some(hours) if hours > 0 => Ok(hours as u64),
        _ => Err(format!(
            "Unexpected interval number \"{number}\": expected an integer greater than 0"
        )),
    }
}

/// One archive a prune considers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Archive name.
    pub name: String,
    /// ID of its metadata object.
    pub id: ObjectId,
    /// Its timestamp (UTC) from the manifest.
    pub ts: NaiveDateTime,
}

impl Candidate {
    /// Whether the name marks a checkpoint archive (`\.checkpoint(\.\d+)?\Z`).
    pub fn is_checkpoint(&self) -> bool {
        strip_checkpoint_suffix(&self.name).is_some()
    }
}

/// `name` without its `.checkpoint` / `.checkpoint.N` suffix, if it has one.
fn strip_checkpoint_suffix(name: &str) -> Option<&str> {
    if let Some(base) = name.strip_suffix(".checkpoint") {
        return Some(base);
    }
    let (head, digits) = name.rsplit_once('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    head.strip_suffix(".checkpoint")
}

/// The archives of `manifest` a prune with `--glob-archives glob` considers, newest first
/// (borg's `manifest.archives.list(glob, consider_checkpoints=True, match_end=checkpoint
/// suffix, sort_by=['ts'], reverse=True)`): the glob must match the name, or the name without
/// its checkpoint suffix. Archives with equal timestamps come in reverse name order, as borg's
/// stable sort of the name-ordered manifest and its reversal give them.
pub fn select(manifest: &Manifest, glob: Option<&str>) -> Result<Vec<Candidate>, PatternError> {
    let re = archive_glob(glob.unwrap_or("*"))?;
    let mut out: Vec<Candidate> = manifest
        .archives
        .iter()
        .filter(|(name, _)| {
            re.is_match(name) || strip_checkpoint_suffix(name).is_some_and(|b| re.is_match(b))
        })
        .filter_map(|(name, entry)| {
            Some(Candidate {
                name: name.clone(),
                id: entry.id,
                ts: parse_timestamp(&entry.time)?,
            })
        })
        .collect();
    out.sort_by_key(|c| c.ts);
    out.reverse();
    Ok(out)
}

/// Why an archive survives, or that it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Kept by a rule: borg's `kept_because[id]`, e.g. (`"daily"`, 1) or
    /// (`"monthly[oldest]"`, 7) or (`"within"`, 3).
    Keep {
        /// Rule name as borg prints it.
        rule: String,
        /// How many archives the rule had kept including this one.
        number: usize,
    },
    /// The newest checkpoint, newer than every regular archive.
    KeepCheckpoint,
    /// To be deleted.
    Prune,
}

impl Decision {
    /// Whether the archive is deleted.
    pub fn is_prune(&self) -> bool {
        matches!(self, Decision::Prune)
    }
}

/// Decides for each archive of `archives` (newest first, as [`select`] returns them) whether
/// it is kept and why. `now` is the reference for `--keep-within`; `to_local` converts a UTC
/// timestamp to local time (normally [`crate::format::utc_to_local`], which truncates to
/// seconds like borg's `to_localtime`). The result has the input order.
pub fn plan(
    archives: &[Candidate],
    policy: &Policy,
    now: DateTime<Utc>,
    to_local: impl Fn(&NaiveDateTime) -> Option<NaiveDateTime>,
) -> Vec<(Candidate, Decision)> {
    let newest_is_checkpoint = archives.first().is_some_and(Candidate::is_checkpoint);
    let regular: Vec<&Candidate> = archives.iter().filter(|a| !a.is_checkpoint()).collect();
    let mut kept: HashMap<ObjectId, (String, usize)> = HashMap::new();

    if let Some(hours) = policy.within_hours {
        let limit = TimeDelta::try_hours(i64::try_from(hours).unwrap_or(i64::MAX))
            .and_then(|d| now.naive_utc().checked_sub_signed(d));
        let mut counter = 0;
        for a in &regular {
            if limit.is_none_or(|limit| a.ts > limit) {
                counter += 1;
                kept.insert(a.id, ("within".to_string(), counter));
            }
        }
    }

    for rule in PeriodRule::ALL {
        let n = policy.count(rule);
        if n == 0 {
            continue;
        }
        let mut last: Option<String> = None;
        let mut count = 0usize;
        let mut reached = false;
        for a in &regular {
            let period = to_local(&a.ts).map(|t| t.format(rule.pattern()).to_string());
            if period != last {
                last = period;
                if let Entry::Vacant(slot) = kept.entry(a.id) {
                    count += 1;
                    slot.insert((rule.name().to_string(), count));
                    if n > 0 && count as i64 == n {
                        reached = true;
                        break;
                    }
                }
            }
        }
        if let Some(oldest) = regular.last() {
            if !reached && (count as i64) < n && !kept.contains_key(&oldest.id) {
                count += 1;
                kept.insert(oldest.id, (format!("{}[oldest]", rule.name()), count));
            }
        }
    }

    archives
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let decision = if a.is_checkpoint() {
                if i == 0 && newest_is_checkpoint {
                    Decision::KeepCheckpoint
                } else {
                    Decision::Prune
                }
            } else {
                match kept.get(&a.id) {
                    Some((rule, number)) => Decision::Keep {
                        rule: rule.clone(),
                        number: *number,
                    },
                    None => Decision::Prune,
                }
            };
            (a.clone(), decision)
        })
        .collect()
}

/// [`plan`] as `borg prune` runs it: `--keep-within` counted from now, periods in the local
/// time zone.
pub fn plan_now(archives: &[Candidate], policy: &Policy) -> Vec<(Candidate, Decision)> {
    plan(archives, policy, Utc::now(), crate::format::utc_to_local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn cand(i: u8, name: &str, t: &str) -> Candidate {
        let mut id = [0u8; 32];
        id[0] = i;
        Candidate {
            name: name.into(),
            id,
            ts: ts(t),
        }
    }

    /// newest first, like `select`
    fn history(list: &[(&str, &str)]) -> Vec<Candidate> {
        let mut v: Vec<Candidate> = list
            .iter()
            .enumerate()
            .map(|(i, (n, t))| cand(i as u8, n, t))
            .collect();
        v.sort_by_key(|c| c.ts);
        v.reverse();
        v
    }

    /// Renders a plan like `borg prune --list` (without time and id) for snapshot comparison.
    fn render(plan: &[(Candidate, Decision)]) -> Vec<String> {
        plan.iter()
            .map(|(c, d)| match d {
                Decision::Keep { rule, number } => format!("keep {rule} #{number}: {}", c.name),
                Decision::KeepCheckpoint => format!("keep checkpoint: {}", c.name),
                Decision::Prune => format!("prune: {}", c.name),
            })
            .collect()
    }

    fn utc(t: &NaiveDateTime) -> Option<NaiveDateTime> {
        Some(*t)
    }

    fn now() -> DateTime<Utc> {
        ts("2020-12-31 00:00:00").and_utc()
    }

    fn policy(rules: &[(PeriodRule, i64)]) -> Policy {
        let mut p = Policy::default();
        for &(r, n) in rules {
            p.set(r, n);
        }
        p
    }

    #[test]
    fn docs_prune_example() {
        // borg's docs/misc/prune-example.txt / test_prune_repository_example
        let mut list = vec![("test01", "2015-01-01 00:00:00".to_string())];
        for (i, d) in ["06-30", "07-31", "08-31", "09-30", "10-31", "11-30"]
            .iter()
            .enumerate()
        {
            list.push((
                ["test02", "test03", "test04", "test05", "test06", "test07"][i],
                format!("2015-{d} 00:00:00"),
            ));
        }
        let days = [17, 18, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31];
        let names: Vec<String> = (8..22).map(|i| format!("test{i:02}")).collect();
        for (n, d) in names.iter().zip(days) {
            list.push((n.as_str(), format!("2015-12-{d} 00:00:00")));
        }
        list.push(("test22", "2015-01-02 00:00:00".into()));
        list.push(("test23", "2015-05-31 00:00:00".into()));
        list.push(("test24", "2015-12-16 00:00:00".into()));
        let borrowed: Vec<(&str, &str)> = list.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let p = policy(&[
            (PeriodRule::Daily, 14),
            (PeriodRule::Monthly, 6),
            (PeriodRule::Yearly, 1),
        ]);
        let out = render(&plan(&history(&borrowed), &p, now(), utc));
        let mut expected: Vec<String> = (8..22)
            .rev()
            .enumerate()
            .map(|(i, n)| format!("keep daily #{}: test{n:02}", i + 1))
            .collect();
        expected.push("prune: test24".into());
        for (i, n) in (2..8).rev().enumerate() {
            expected.push(format!("keep monthly #{}: test{n:02}", i + 1));
        }
        expected.push("prune: test23".into());
        expected.push("prune: test22".into());
        expected.push("keep yearly[oldest] #1: test01".into());
        assert_eq!(out, expected);
    }

    #[test]
    fn checkpoints() {
        let h = history(&[
            ("test1", "2020-01-01 10:00:00"),
            ("test2", "2020-01-01 11:00:00"),
            ("test3.checkpoint", "2020-01-01 12:00:00"),
            ("test3.checkpoint.1", "2020-01-01 13:00:00"),
            ("test4.checkpoint", "2020-01-01 14:00:00"),
        ]);
        let p = policy(&[(PeriodRule::Daily, 1)]);
        assert_eq!(
            render(&plan(&h, &p, now(), utc)),
            [
                "keep checkpoint: test4.checkpoint",
                "prune: test3.checkpoint.1",
                "prune: test3.checkpoint",
                "keep daily #1: test2",
                "prune: test1",
            ]
        );
        // a complete backup after the checkpoints supersedes them all
        let h = history(&[
            ("test3.checkpoint", "2020-01-01 12:00:00"),
            ("test5", "2020-01-01 15:00:00"),
        ]);
        assert_eq!(
            render(&plan(&h, &policy(&[(PeriodRule::Daily, 2)]), now(), utc)),
            ["keep daily #1: test5", "prune: test3.checkpoint"]
        );
    }

    #[test]
    fn within_then_rules_and_oldest() {
        let h = history(&[
            ("a", "2020-12-30 20:00:00"),
            ("b", "2020-12-30 10:00:00"),
            ("c", "2020-12-29 10:00:00"),
            ("d", "2020-12-28 10:00:00"),
            ("e", "2020-11-15 10:00:00"),
        ]);
        let mut p = policy(&[(PeriodRule::Daily, 2), (PeriodRule::Monthly, 5)]);
        p.within_hours = Some(24);
        assert_eq!(
            render(&plan(&h, &p, now(), utc)),
            [
                "keep within #1: a",
                "keep within #2: b",
                "keep daily #1: c",
                "keep daily #2: d",
                "keep monthly #1: e",
            ]
        );
    }

    #[test]
    fn kept_archives_still_open_their_period() {
        // `b` is kept by keep-last; daily then starts at a (2nd), whose day is already taken
        let h = history(&[
            ("a", "2020-12-30 20:00:00"),
            ("b", "2020-12-30 21:00:00"),
            ("c", "2020-12-29 10:00:00"),
            ("d", "2020-12-29 09:00:00"),
        ]);
        let p = policy(&[(PeriodRule::Secondly, 1), (PeriodRule::Daily, 1)]);
        assert_eq!(
            render(&plan(&h, &p, now(), utc)),
            [
                "keep secondly #1: b",
                "prune: a",
                "keep daily #1: c",
                "prune: d"
            ]
        );
    }

    #[test]
    fn negative_count_keeps_every_period_without_oldest() {
        let h = history(&[
            ("a", "2020-12-30 20:00:00"),
            ("b", "2020-12-30 10:00:00"),
            ("c", "2020-12-29 10:00:00"),
        ]);
        let p = policy(&[(PeriodRule::Daily, -1)]);
        assert_eq!(
            render(&plan(&h, &p, now(), utc)),
            ["keep daily #1: a", "prune: b", "keep daily #2: c"]
        );
    }

    #[test]
    fn iso_weeks() {
        // 2021-01-03 is in ISO week 2020-53, like 2020-12-28
        let h = history(&[
            ("a", "2021-01-04 00:00:00"),
            ("b", "2021-01-03 00:00:00"),
            ("c", "2020-12-28 00:00:00"),
            ("d", "2020-12-27 00:00:00"),
        ]);
        let p = policy(&[(PeriodRule::Weekly, 3)]);
        assert_eq!(
            render(&plan(&h, &p, now(), utc)),
            [
                "keep weekly #1: a",
                "keep weekly #2: b",
                "prune: c",
                "keep weekly #3: d"
            ]
        );
    }

    #[test]
    fn select_matches_checkpoint_suffixes_and_orders_ties_by_name() {
        let mut m = Manifest::new();
        for (i, (name, time)) in [
            ("a-1", "2020-01-01T10:00:00.000000"),
            ("a-1.checkpoint", "2020-01-01T11:00:00.000000"),
            ("a-1.checkpoint.3", "2020-01-01T12:00:00.000000"),
            ("a-2", "2020-01-01T09:00:00.500000"),
            ("a-3", "2020-01-01T09:00:00.500000"),
            ("b-1", "2020-01-02T00:00:00.000000"),
        ]
        .iter()
        .enumerate()
        {
            let mut id = [0u8; 32];
            id[0] = i as u8;
            m.archives.insert(
                name.to_string(),
                crate::ArchiveEntry {
                    id,
                    time: time.to_string(),
                },
            );
        }
        let names = |glob: Option<&str>| -> Vec<String> {
            select(&m, glob)
                .unwrap()
                .into_iter()
                .map(|c| c.name)
                .collect()
        };
        // borg's match_end lets an exact name also match its checkpoints
        assert_eq!(
            names(Some("a-1")),
            ["a-1.checkpoint.3", "a-1.checkpoint", "a-1"]
        );
        // equal times: reverse name order (stable sort of the name-ordered list, reversed)
        assert_eq!(
            names(Some("a-*")),
            ["a-1.checkpoint.3", "a-1.checkpoint", "a-1", "a-3", "a-2"]
        );
        assert_eq!(names(None).first().map(String::as_str), Some("b-1"));
        assert!(names(Some("c-*")).is_empty());
    }

    #[test]
    fn checkpoint_names() {
        let c = |n: &str| cand(0, n, "2020-01-01 00:00:00").is_checkpoint();
        assert!(c("x.checkpoint"));
        assert!(c("x.checkpoint.12"));
        assert!(!c("x.checkpoint.a"));
        assert!(!c("x.checkpoint."));
        assert!(!c("x.checkpointy"));
        assert!(!c("x"));
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("2H"), Ok(2));
        assert_eq!(parse_interval("1d"), Ok(24));
        assert_eq!(parse_interval("2w"), Ok(336));
        assert_eq!(parse_interval("1m"), Ok(744));
        assert_eq!(parse_interval("1y"), Ok(8760));
        assert_eq!(
            parse_interval("1s").unwrap_err(),
            "Unexpected interval time unit \"s\": expected one of ['H', 'd', 'w', 'm', 'y']"
        );
        assert_eq!(
            parse_interval("0d").unwrap_err(),
            "Unexpected interval number \"0\": expected an integer greater than 0"
        );
        assert!(parse_interval("xd").is_err());
    }
}
