//! Cronitor (<https://cronitor.io>), after borgmatic 2.1.10's `hooks/monitoring/cronitor.py`:
//! a `GET` of the ping URL plus `/run`, `/complete` or `/fail`; the log state is not sent.

use super::http::Request;
use super::{dry_run_label, Monitor, Report, State};

pub(super) struct Cronitor {
    ping_url: String,
}

impl Cronitor {
    pub(super) fn new(hook: &rborg_config::model::PingUrl) -> Cronitor {
        Cronitor {
            ping_url: hook.ping_url.clone(),
        }
    }
}

impl Monitor for Cronitor {
    fn ping(&self, state: State, _log_tail: &str, dry_run: bool, report: &mut Report) {
        let suffix = match state {
            State::Start => "run",
            State::Finish => "complete",
            State::Fail => "fail",
            State::Log => {
                report.debug("Ignoring unsupported monitoring state log in Cronitor hook");
                return;
            }
        };
        let ping_url = format!("{}/{suffix}", self.ping_url);
        report.info(format!(
            "Pinging Cronitor {}{}",
            state.name(),
            dry_run_label(dry_run, "pinging")
        ));
        report.debug(format!("Using Cronitor ping URL {ping_url}"));
        if dry_run {
            return;
        }
        if let Err(error) = Request::get(&ping_url).send() {
            report.warn(format!("Cronitor error: {error}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, run, FAILURE, SUCCESS};
    use super::super::Monitors;
    use rborg_testkit::http_recorder::Recorder;
    use std::path::Path;

    fn paths(states: &[super::State]) -> Vec<(String, String)> {
        let server = Recorder::start();
        let c = config(&format!(
            "cronitor: {{ping_url: {}/d3x0c1}}\n",
            server.url()
        ));
        let monitors = Monitors::from_config(&c, Path::new("c.yaml"));
        run(&monitors, &server, states, "logs are not sent")
            .into_iter()
            .map(|r| {
                assert!(r.body.is_empty() && r.query.is_none(), "{r:?}");
                (r.method, r.path)
            })
            .collect()
    }

    #[test]
    fn success_and_failure_runs() {
        let get = |p: &str| ("GET".to_string(), p.to_string());
        assert_eq!(
            paths(&SUCCESS),
            [get("/d3x0c1/run"), get("/d3x0c1/complete")]
        );
        assert_eq!(paths(&FAILURE), [get("/d3x0c1/run"), get("/d3x0c1/fail")]);
    }
}
