//! Uptime Kuma push monitors (<https://uptime.kuma.pet>), after borgmatic 2.1.10's
//! `hooks/monitoring/uptime_kuma.py`: a `GET` of `push_url?status=up&msg=start` (`finish`),
//! or `status=down&msg=fail`; states `start`, `finish` and `fail` by default.

use super::http::Request;
use super::{dry_run_label, wants, Monitor, Report, State};

pub(super) struct UptimeKuma {
    push_url: String,
    states: Vec<String>,
    verify_tls: bool,
}

impl UptimeKuma {
    pub(super) fn new(hook: &rborg_config::model::UptimeKuma) -> UptimeKuma {
        UptimeKuma {
            push_url: hook.push_url.clone(),
            states: hook.states.clone(),
            verify_tls: hook.verify_tls.unwrap_or(true),
        }
    }
}

impl Monitor for UptimeKuma {
    fn ping(&self, state: State, _log_tail: &str, dry_run: bool, report: &mut Report) {
        if !wants(
            &self.states,
            &[State::Start, State::Finish, State::Fail],
            state,
        ) {
            return;
        }
        let status = if state == State::Fail { "down" } else { "up" };
        let url = format!("{}?status={status}&msg={}", self.push_url, state.name());
        report.info(format!(
            "Pushing Uptime Kuma push_url {url}{}",
            dry_run_label(dry_run, "pushing")
        ));
        report.debug(format!("Full Uptime Kuma state URL {url}"));
        if dry_run {
            return;
        }
        if let Err(error) = Request::get(&url).verify_tls(self.verify_tls).send() {
            report.warn(format!("Uptime Kuma error: {error}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, run, FAILURE, SUCCESS};
    use super::super::Monitors;
    use super::State;
    use rborg_testkit::http_recorder::Recorder;
    use std::path::Path;

    fn requests(options: &str, states: &[State]) -> Vec<String> {
        let server = Recorder::start();
        let c = config(&format!(
            "uptime_kuma: {{push_url: {}/api/push/abcd1234{options}}}\n",
            server.url()
        ));
        let monitors = Monitors::from_config(&c, Path::new("c.yaml"));
        run(&monitors, &server, states, "")
            .into_iter()
            .map(|r| format!("{} {}?{}", r.method, r.path, r.query.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn success_and_failure_runs() {
        let p = "GET /api/push/abcd1234";
        assert_eq!(
            requests("", &SUCCESS),
            [
                format!("{p}?status=up&msg=start"),
                format!("{p}?status=up&msg=finish")
            ]
        );
        assert_eq!(
            requests("", &FAILURE),
            [
                format!("{p}?status=up&msg=start"),
                format!("{p}?status=down&msg=fail")
            ]
        );
        assert_eq!(
            requests(", states: [fail], verify_tls: false", &FAILURE),
            [format!("{p}?status=down&msg=fail")]
        );
    }
}
