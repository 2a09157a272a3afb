//! Healthchecks (<https://healthchecks.io> or self-hosted), after borgmatic 2.1.10's
//! `hooks/monitoring/healthchecks.py`: a `POST` to the ping URL (a bare UUID means
//! `https://hc-ping.com/UUID`) plus `/start`, `/fail` or `/log` (nothing for finish), with
//! `?create=1` when `create_slug` is set on a slug URL; the body of finish, fail and log pings
//! is the log tail when `send_logs` is true (at most `ping_body_limit` characters, default
//! 100 000, oldest lines dropped behind a `...` line). All states by default.

use super::http::Request;
use super::{dry_run_label, log_payload, Monitor, Report, State};

/// `DEFAULT_PING_BODY_LIMIT_BYTES`.
const DEFAULT_PING_BODY_LIMIT: i64 = 100_000;

pub(super) struct Healthchecks {
    ping_url: String,
    verify_tls: bool,
    send_logs: bool,
    ping_body_limit: i64,
    states: Vec<String>,
    create_slug: bool,
}

impl Healthchecks {
    pub(super) fn new(hook: &rborg_config::model::Healthchecks) -> Healthchecks {
        Healthchecks {
            ping_url: hook.ping_url.clone(),
            verify_tls: hook.verify_tls.unwrap_or(true),
            send_logs: hook.send_logs.unwrap_or(false),
            ping_body_limit: hook.ping_body_limit.unwrap_or(DEFAULT_PING_BODY_LIMIT),
            states: hook.states.clone(),
            create_slug: hook.create_slug.unwrap_or(false),
        }
    }
}

/// borgmatic's `re.search(r'\w{8}-\w{4}-\w{4}-\w{4}-\w{12}$', ping_url)`.
fn ends_with_uuid(url: &str) -> bool {
    let tail: Vec<char> = url.chars().rev().take(36).collect();
    if tail.len() < 36 {
        return false;
    }
    // Reversed, the dashes sit after 12, 4, 4 and 4 word characters.
    tail.iter().enumerate().all(|(i, c)| match i {
        12 | 17 | 22 | 27 => *c == '-',
        _ => c.is_alphanumeric() || *c == '_',
    })
}

impl Monitor for Healthchecks {
    fn ping(&self, state: State, log_tail: &str, dry_run: bool, report: &mut Report) {
        let mut ping_url = if self.ping_url.starts_with("http") {
            self.ping_url.clone()
        } else {
            format!("https://hc-ping.com/{}", self.ping_url)
        };
        if !self.states.is_empty() && !self.states.iter().any(|s| s == state.name()) {
            report.info(format!(
                "Skipping Healthchecks {} ping due to configured states",
                state.name()
            ));
            return;
        }
        let is_uuid = ends_with_uuid(&ping_url);
        match state {
            State::Start | State::Fail | State::Log => {
                ping_url = format!("{ping_url}/{}", state.name());
            }
            State::Finish => {}
        }
        if self.create_slug {
            if is_uuid {
                report.warn("Healthchecks UUIDs do not support auto provisionning; ignoring");
            } else {
                ping_url.push_str("?create=1");
            }
        }
        report.info(format!(
            "Pinging Healthchecks {}{}",
            state.name(),
            dry_run_label(dry_run, "pinging")
        ));
        report.debug(format!("Using Healthchecks ping URL {ping_url}"));
        let payload = if state != State::Start && self.send_logs {
            log_payload(log_tail, self.ping_body_limit)
        } else {
            String::new()
        };
        if dry_run {
            return;
        }
        if let Err(error) = Request::post(&ping_url, payload)
            .verify_tls(self.verify_tls)
            .send()
        {
            report.warn(format!("Healthchecks error: {error}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{closed_port_url, config, run, FAILURE, SUCCESS};
    use super::super::Monitors;
    use super::*;
    use rborg_testkit::http_recorder::Recorder;
    use std::path::Path;

    fn requests(yaml: &str, states: &[State], log: &str) -> Vec<(String, String, String)> {
        let server = Recorder::start();
        let c = config(&yaml.replace("URL", &server.url()));
        let monitors = Monitors::from_config(&c, Path::new("c.yaml"));
        run(&monitors, &server, states, log)
            .into_iter()
            .map(|r| {
                let target = match &r.query {
                    Some(q) => format!("{}?{q}", r.path),
                    None => r.path.clone(),
                };
                (r.method.clone(), target, r.body_text())
            })
            .collect()
    }

    fn triple(method: &str, target: &str, body: &str) -> (String, String, String) {
        (method.into(), target.into(), body.into())
    }

    #[test]
    fn success_and_failure_runs_with_logs() {
        let yaml = "healthchecks: {ping_url: URL/ping/abc, send_logs: true}\n";
        let log = "line one\nline two\n";
        assert_eq!(
            requests(yaml, &SUCCESS, log),
            [
                triple("POST", "/ping/abc/start", ""),
                triple("POST", "/ping/abc/log", log),
                triple("POST", "/ping/abc", log),
            ]
        );
        assert_eq!(
            requests(yaml, &FAILURE, log),
            [
                triple("POST", "/ping/abc/start", ""),
                triple("POST", "/ping/abc/log", log),
                triple("POST", "/ping/abc/fail", log),
            ]
        );
    }

    #[test]
    fn logs_are_not_sent_by_default_and_truncated_to_the_limit() {
        let log = "0123456789\nabcdefghij\nlast\n";
        assert_eq!(
            requests("healthchecks: {ping_url: URL/p}\n", &[State::Fail], log),
            [triple("POST", "/p/fail", "")]
        );
        // 20 - 4 = 16 characters kept: "abcdefghij\n" (11) + "last\n" (5).
        assert_eq!(
            requests(
                "healthchecks: {ping_url: URL/p, send_logs: true, ping_body_limit: 20}\n",
                &[State::Finish],
                log
            ),
            [triple("POST", "/p", "...\nabcdefghij\nlast\n")]
        );
    }

    #[test]
    fn states_filter_and_create_slug() {
        let yaml = "healthchecks: {ping_url: URL/key/my-slug, states: [finish, fail], create_slug: true}\n";
        assert_eq!(
            requests(yaml, &SUCCESS, "x"),
            [triple("POST", "/key/my-slug?create=1", "")]
        );
        // A UUID URL ignores create_slug, with a warning.
        let uuid = "1f5e3410-254c-5587-9a1b-0123456789ab";
        let c = config(&format!(
            "healthchecks: {{ping_url: {uuid}, create_slug: true}}\n"
        ));
        let monitors = Monitors::from_config(&c, Path::new("c.yaml"));
        let messages = monitors.ping_messages(State::Start, "", true);
        let texts: Vec<&str> = messages.iter().map(|m| m.text.as_str()).collect();
        assert!(texts.contains(&"Healthchecks UUIDs do not support auto provisionning; ignoring"));
        assert!(texts.contains(
            &format!("Using Healthchecks ping URL https://hc-ping.com/{uuid}/start").as_str()
        ));
    }

    #[test]
    fn uuid_detection_matches_borgmatics_regex() {
        assert!(ends_with_uuid(
            "https://hc-ping.com/1f5e3410-254c-5587-9a1b-0123456789ab"
        ));
        assert!(ends_with_uuid("abcdefgh-ijkl-mnop-qrst-uvwxyz_12345"));
        assert!(!ends_with_uuid("https://hc-ping.com/key/my-slug"));
        assert!(!ends_with_uuid("1f5e3410-254c-5587-9a1b-0123456789a"));
        assert!(!ends_with_uuid("1f5e3410-254c-5587-9a1b-0123456789ab/"));
    }

    #[test]
    fn unreachable_server_is_a_warning() {
        let url = closed_port_url();
        let c = config(&format!("healthchecks: {{ping_url: '{url}/p'}}\n"));
        let warnings = Monitors::from_config(&c, Path::new("c.yaml")).ping(State::Start, "", false);
        assert_eq!(warnings.len(), 1);
        let expected = format!("Healthchecks error: cannot reach {url}/p/start: ");
        assert!(warnings[0].starts_with(&expected), "{warnings:?}");
    }
}
