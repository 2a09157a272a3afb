//! Monitoring hooks (healthchecks, uptime kuma, ntfy, pagerduty, cronitor, cronhub, loki),
//! pinged natively around each configuration file's run, as borgmatic's `Monitoring_hooks`
//! (`borgmatic/commands/borgmatic.py`) does: `start` before the actions, then `log` and
//! `finish` (or `fail`) after them. One module per service follows the matching borgmatic
//! 2.1.10 module `borgmatic/hooks/monitoring/<service>.py` (cronhub, gone from 2.x, follows
//! borgmatic 1.7.7's `hooks/cronhub.py`); `docs/monitoring.md` lists what is sent when.
//!
//! borgmatic feeds its monitors from log handlers attached to the root logger; here the caller
//! captures the run's log and hands it to [`Monitors::ping_messages`], and each monitor cuts it to its
//! own limit as borgmatic's `Forgetful_buffering_handler` (`hooks/monitoring/logs.py`) would.

mod cronhub;
mod cronitor;
mod healthchecks;
mod http;
mod loki;
mod ntfy;
mod pagerduty;
mod uptime_kuma;

use std::path::Path;

/// A point of a configuration file's run that monitors are told about (borgmatic's
/// `hooks/monitoring/monitor.py` `State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Before the actions.
    Start,
    /// After the actions succeeded.
    Finish,
    /// After an action failed.
    Fail,
    /// After the actions, either way: the logs so far.
    Log,
}

impl State {
    /// The lower-case name used in `states:` options and log messages.
    pub fn name(self) -> &'static str {
        match self {
            State::Start => "start",
            State::Finish => "finish",
            State::Fail => "fail",
            State::Log => "log",
        }
    }

    /// The upper-case name borgmatic puts in ntfy's default messages (`state.name`).
    fn upper_name(self) -> &'static str {
        match self {
            State::Start => "START",
            State::Finish => "FINISH",
            State::Fail => "FAIL",
            State::Log => "LOG",
        }
    }
}

/// The level of a [`Message`], as borgmatic logs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Shown with `-v 2`: URLs used.
    Debug,
    /// Shown with `-v 1`: what is pinged (and, in a dry run, that nothing is sent).
    Info,
    /// Always shown: a monitor could not be reached or is misconfigured.
    Warning,
}

/// One log message produced while pinging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its level.
    pub level: Level,
    /// The text, without the configuration file prefix (the caller adds it).
    pub text: String,
}

/// Collects the messages of one monitor's ping.
#[derive(Debug, Default)]
pub(crate) struct Report {
    messages: Vec<Message>,
}

impl Report {
    fn push(&mut self, level: Level, text: impl Into<String>) {
        self.messages.push(Message {
            level,
            text: text.into(),
        });
    }

    fn debug(&mut self, text: impl Into<String>) {
        self.push(Level::Debug, text);
    }

    fn info(&mut self, text: impl Into<String>) {
        self.push(Level::Info, text);
    }

    fn warn(&mut self, text: impl Into<String>) {
        self.push(Level::Warning, text);
    }
}

/// One configured monitoring service.
trait Monitor: Send + Sync {
    /// Tells the service about `state`; problems become warnings in `report`, never errors.
    fn ping(&self, state: State, log_tail: &str, dry_run: bool, report: &mut Report);
}

/// All monitors configured in one configuration file.
pub struct Monitors {
    monitors: Vec<Box<dyn Monitor>>,
}

impl std::fmt::Debug for Monitors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitors")
            .field("count", &self.monitors.len())
            .finish()
    }
}

/// What the monitors need to know about the configuration file and the host, resolved once.
pub(crate) struct Context<'a> {
    /// The configuration file's path as given (Loki's `__config_path`, PagerDuty's details).
    config_filename: &'a Path,
    /// `platform.node()`: the host name.
    hostname: String,
    /// `working_directory`: the base of relative `{credential file ...}` paths.
    working_directory: Option<&'a str>,
    /// The environment (`CREDENTIALS_DIRECTORY`, `RBORG_PAGERDUTY_EVENTS_URL`).
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Context<'_> {
    /// Resolves a `{credential ...}` value (or returns a plain value as is); `Err` holds the
    /// message borgmatic would log.
    fn credential(&self, value: &str) -> Result<String, String> {
        rborg_config::resolve_credential(value, self.working_directory, self.env)
            .map_err(|e| e.to_string())
    }
}

impl Monitors {
    /// The monitors of `config`, in the order borgmatic calls them (its hook modules sorted by
    /// name). Credentials and `RBORG_PAGERDUTY_EVENTS_URL` are read from the process
    /// environment.
    pub fn from_config(config: &rborg_config::Config, config_filename: &Path) -> Monitors {
        Monitors::from_config_with_env(config, config_filename, &|name| std::env::var(name).ok())
    }

    /// [`Monitors::from_config`] with `env` as the environment (`CREDENTIALS_DIRECTORY` for
    /// `{credential systemd ...}`, `RBORG_PAGERDUTY_EVENTS_URL`).
    pub fn from_config_with_env(
        config: &rborg_config::Config,
        config_filename: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Monitors {
        let context = Context {
            config_filename,
            hostname: hostname(),
            working_directory: config.working_directory.as_deref(),
            env,
        };
        let mut monitors: Vec<Box<dyn Monitor>> = Vec::new();
        if let Some(hook) = &config.cronhub {
            monitors.push(Box::new(cronhub::Cronhub::new(hook)));
        }
        if let Some(hook) = &config.cronitor {
            monitors.push(Box::new(cronitor::Cronitor::new(hook)));
        }
        if let Some(hook) = &config.healthchecks {
            monitors.push(Box::new(healthchecks::Healthchecks::new(hook)));
        }
        if let Some(hook) = &config.loki {
            monitors.push(Box::new(loki::Loki::new(hook, &context)));
        }
        if let Some(hook) = &config.ntfy {
            monitors.push(Box::new(ntfy::Ntfy::new(hook, &context)));
        }
        if let Some(hook) = &config.pagerduty {
            monitors.push(Box::new(pagerduty::PagerDuty::new(hook, &context)));
        }
        if let Some(hook) = &config.uptime_kuma {
            monitors.push(Box::new(uptime_kuma::UptimeKuma::new(hook)));
        }
        Monitors { monitors }
    }

    /// Whether no monitoring hook is configured.
    pub fn is_empty(&self) -> bool {
        self.monitors.is_empty()
    }

    /// Pings every monitor whose `states` include `state`; `log_tail` is the run's captured log
    /// text, whole, from just before the `start` ping on, at the monitoring verbosity, including
    /// the messages of earlier pings as borgmatic's log handlers see them (each monitor applies
    /// its own limit and truncation as borgmatic does; Loki with `send_logs` sends it all). Never
    /// fails: returns one warning string per monitor that could not be reached (the caller
    /// logs them). In a dry run nothing is sent.
    /// (The runner logs every message of [`Monitors::ping_messages`]; this warnings-only form
    /// serves the tests.)
    #[cfg(test)]
    pub fn ping(&self, state: State, log_tail: &str, dry_run: bool) -> Vec<String> {
        self.ping_messages(state, log_tail, dry_run)
            .into_iter()
            .filter(|m| m.level == Level::Warning)
            .map(|m| m.text)
            .collect()
    }

    /// `Monitors::ping` with every message borgmatic would log (what is pinged, the URLs,
    /// what a dry run skips), in monitor order. The monitors are pinged in parallel, so one
    /// dead service delays the run by one timeout at most, not one per service.
    pub fn ping_messages(&self, state: State, log_tail: &str, dry_run: bool) -> Vec<Message> {
        let reports: Vec<Report> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .monitors
                .iter()
                .map(|monitor| {
                    scope.spawn(move || {
                        let mut report = Report::default();
                        monitor.ping(state, log_tail, dry_run, &mut report);
                        report
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        let mut report = Report::default();
                        report.warn("A monitoring hook panicked");
                        report
                    })
                })
                .collect()
        });
        reports.into_iter().flat_map(|r| r.messages).collect()
    }
}

/// `platform.node()`: the host name (empty if unavailable).
fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// borgmatic's `PAYLOAD_TRUNCATION_INDICATOR`, put before logs whose oldest lines were dropped.
const TRUNCATION_INDICATOR: &str = "...\n";

/// The log payload borgmatic's `Forgetful_buffering_handler` would hold after seeing the lines
/// of `log`, with `capacity` the limit minus the indicator's length (`0` = unlimited): each
/// line plus `\n`, oldest lines dropped until the total fits, [`TRUNCATION_INDICATOR`] first if
/// any was dropped. Lengths are counted in characters, as Python's `len(str)` does.
fn log_payload(log: &str, limit: i64) -> String {
    let capacity = usize::try_from(limit - TRUNCATION_INDICATOR.len() as i64).unwrap_or(0);
    let lines: Vec<&str> = log.lines().collect();
    let mut first = 0;
    if capacity > 0 {
        let mut count: usize = lines.iter().map(|l| l.chars().count() + 1).sum();
        while count > capacity && first < lines.len() {
            count -= lines[first].chars().count() + 1;
            first += 1;
        }
    }
    let mut payload = String::new();
    if first > 0 {
        payload.push_str(TRUNCATION_INDICATOR);
    }
    for line in &lines[first..] {
        payload.push_str(line);
        payload.push('\n');
    }
    payload
}

/// Whether a hook with `states` (empty: the option is absent) is pinged for `state`.
fn wants(states: &[String], default: &[State], state: State) -> bool {
    if states.is_empty() {
        default.contains(&state)
    } else {
        states.iter().any(|s| s == state.name())
    }
}

/// borgmatic's suffix for dry-run log messages.
fn dry_run_label(dry_run: bool, verb: &str) -> String {
    if dry_run {
        format!(" (dry run; not actually {verb})")
    } else {
        String::new()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rborg_testkit::http_recorder::{RecordedRequest, Recorder};
    use std::time::{Duration, Instant};

    /// Loads a configuration from YAML text, as the orchestrator will.
    pub(crate) fn config(yaml: &str) -> rborg_config::Config {
        let text = format!("source_directories: [/tmp]\nrepositories: [{{path: /tmp/r}}]\n{yaml}");
        rborg_config::load_config_str(&text, Path::new("/etc/borgmatic/config.yaml"), None)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .config
    }

    /// Pings `monitors` with `states` in order as a run does and returns what the server got.
    pub(crate) fn run(
        monitors: &Monitors,
        server: &Recorder,
        states: &[State],
        log: &str,
    ) -> Vec<RecordedRequest> {
        for state in states {
            let warnings = monitors.ping(*state, log, false);
            assert!(warnings.is_empty(), "{warnings:?}");
        }
        server.requests()
    }

    /// `http://127.0.0.1:PORT` where nothing listens (a port just bound and released).
    pub(crate) fn closed_port_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    pub(crate) const SUCCESS: [State; 3] = [State::Start, State::Log, State::Finish];
    pub(crate) const FAILURE: [State; 3] = [State::Start, State::Log, State::Fail];

    #[test]
    fn log_payload_drops_oldest_lines_like_borgmatic() {
        assert_eq!(log_payload("", 100_000), "");
        assert_eq!(log_payload("a\nb\n", 100_000), "a\nb\n");
        // capacity 10 - 4 = 6 characters: "ccc\n" (4) + "dd\n" (3) > 6, so only "dd\n" stays.
        assert_eq!(log_payload("a\nbb\nccc\ndd", 10), "...\ndd\n");
        assert_eq!(log_payload("a\nbb\nccc\ndd", 11), "...\nccc\ndd\n");
        // 0 (and anything up to the indicator's length) means no truncation.
        assert_eq!(log_payload("a\nbb\nccc\ndd", 0), "a\nbb\nccc\ndd\n");
        assert_eq!(log_payload("a\nbb", 3), "a\nbb\n");
        // Characters, not bytes, as Python counts.
        assert_eq!(log_payload("é\nx", 8), "é\nx\n");
        // A line longer than the capacity empties the buffer, as borgmatic's would.
        assert_eq!(log_payload("short\nwaytoolong", 8), "...\n");
    }

    #[test]
    fn no_hooks_is_empty() {
        let monitors = Monitors::from_config(&config(""), Path::new("c.yaml"));
        assert!(monitors.is_empty());
        assert!(monitors.ping(State::Start, "", false).is_empty());
    }

    #[test]
    fn every_hook_pinged_in_parallel_with_one_warning_per_dead_monitor() {
        let server = Recorder::start();
        let dead = closed_port_url();
        let url = server.url();
        let c = config(&format!(
            "healthchecks: {{ping_url: {url}/hc}}\ncronitor: {{ping_url: {dead}/cr}}\n\
             uptime_kuma: {{push_url: {dead}/kuma}}\nntfy: {{topic: t, server: {url}, states: [start]}}\n"
        ));
        let monitors = Monitors::from_config(&c, Path::new("c.yaml"));
        assert!(!monitors.is_empty());
        let started = Instant::now();
        let warnings = monitors.ping(State::Start, "", false);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("Cronitor error: cannot reach"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("Uptime Kuma error: cannot reach"),
            "{warnings:?}"
        );
        let mut paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
        paths.sort();
        assert_eq!(paths, ["/", "/hc/start"]);
    }

    #[test]
    fn dry_run_sends_nothing_but_says_what_it_would_do() {
        let server = Recorder::start();
        let url = server.url();
        let mut c = config(&format!(
            "healthchecks: {{ping_url: {url}/hc, send_logs: true}}\ncronitor: {{ping_url: {url}/cr}}\n\
             uptime_kuma: {{push_url: {url}/kuma}}\n\
             ntfy: {{topic: t, server: {url}, states: [start, finish, fail]}}\n\
             pagerduty: {{integration_key: k}}\nloki: {{url: {url}/loki, labels: {{a: b}}}}\n"
        ));
        c.cronhub = Some(rborg_config::model::PingUrl {
            ping_url: format!("{url}/start/x"),
        });
        let monitors = Monitors::from_config_with_env(&c, Path::new("c.yaml"), &|name| {
            (name == "RBORG_PAGERDUTY_EVENTS_URL").then(|| format!("{url}/pd"))
        });
        let mut infos = Vec::new();
        for state in FAILURE {
            for m in monitors.ping_messages(state, "log line", true) {
                assert_ne!(m.level, Level::Warning, "{m:?}");
                if m.level == Level::Info {
                    infos.push(m.text);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(server.requests().is_empty(), "{:?}", server.requests());
        for expected in [
            "Pinging Cronhub start (dry run; not actually pinging)",
            "Pinging Cronitor fail (dry run; not actually pinging)",
            "Pinging Healthchecks log (dry run; not actually pinging)",
            "Pinging ntfy topic t with fail (dry run; not actually pinging)",
            "Sending failure event to PagerDuty (dry run; not actually sending)",
            "Skipped uploading logs to Loki due to dry run",
        ] {
            assert!(
                infos.iter().any(|i| i == expected),
                "{expected}: {infos:#?}"
            );
        }
        assert!(
            infos
                .iter()
                .any(|i| i.starts_with("Pushing Uptime Kuma push_url ")
                    && i.ends_with("/kuma?status=down&msg=fail (dry run; not actually pushing)")),
            "{infos:#?}"
        );
    }
}
