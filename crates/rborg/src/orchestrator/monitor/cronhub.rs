//! Cronhub (<https://cronhub.io>). borgmatic 2.x dropped this hook; rborg keeps it as
//! borgmatic 1.7.7's `hooks/cronhub.py` has it: a `GET` of the ping URL with its `/start/` or
//! `/ping/` segment replaced by `/start/`, `/finish/` or `/fail/` for the state (so
//! `https://cronhub.io/ping/UUID` and `https://cronhub.io/start/UUID` both work). The log
//! state, which 1.7.7 did not have, is not sent.

use super::http::Request;
use super::{dry_run_label, Monitor, Report, State};

pub(super) struct Cronhub {
    ping_url: String,
}

impl Cronhub {
    pub(super) fn new(hook: &rborg_config::model::PingUrl) -> Cronhub {
        Cronhub {
            ping_url: hook.ping_url.clone(),
        }
    }
}

impl Monitor for Cronhub {
    fn ping(&self, state: State, _log_tail: &str, dry_run: bool, report: &mut Report) {
        if state == State::Log {
            report.debug("Ignoring unsupported monitoring state log in Cronhub hook");
            return;
        }
        let formatted = format!("/{}/", state.name());
        let ping_url = self
            .ping_url
            .replace("/start/", &formatted)
            .replace("/ping/", &formatted);
        report.info(format!(
            "Pinging Cronhub {}{}",
            state.name(),
            dry_run_label(dry_run, "pinging")
        ));
        report.debug(format!("Using Cronhub ping URL {ping_url}"));
        if dry_run {
            return;
        }
        if let Err(error) = Request::get(&ping_url).send() {
            report.warn(format!("Cronhub error: {error}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, run, FAILURE, SUCCESS};
    use super::super::Monitors;
    use rborg_config::model::PingUrl;
    use rborg_testkit::http_recorder::Recorder;
    use std::path::Path;

    fn paths(first_segment: &str, states: &[super::State]) -> Vec<(String, String)> {
        let server = Recorder::start();
        // borgmatic 2.x's schema (which rborg-config validates against) has no `cronhub`.
        let mut c = config("");
        c.cronhub = Some(PingUrl {
            ping_url: format!("{}/{first_segment}/1f5e3410-254c-5587", server.url()),
        });
        let monitors = Monitors::from_config(&c, Path::new("c.yaml"));
        run(&monitors, &server, states, "")
            .into_iter()
            .map(|r| (r.method, r.path))
            .collect()
    }

    #[test]
    fn success_and_failure_runs_from_ping_and_start_urls() {
        let get = |p: &str| ("GET".to_string(), format!("/{p}/1f5e3410-254c-5587"));
        for first in ["ping", "start"] {
            assert_eq!(paths(first, &SUCCESS), [get("start"), get("finish")]);
            assert_eq!(paths(first, &FAILURE), [get("start"), get("fail")]);
        }
    }
}
