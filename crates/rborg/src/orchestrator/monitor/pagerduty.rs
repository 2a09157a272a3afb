//! PagerDuty, after borgmatic 2.1.10's `hooks/monitoring/pagerduty.py`: on `fail` only, a
//! `POST` of an Events API v2 `trigger` event to `https://events.pagerduty.com/v2/enqueue`,
//! with the host, the configuration file, the local time and (with `send_logs: true`) the last
//! 10 000 characters of logs in `custom_details`. The integration key accepts
//! `{credential ...}`.
//!
//! The Events API URL is fixed, as in borgmatic; the environment variable
//! `RBORG_PAGERDUTY_EVENTS_URL` replaces it (for tests against a local server, or a proxy).

use serde_json::json;

use super::http::Request;
use super::{dry_run_label, log_payload, Context, Monitor, Report, State};

/// borgmatic's `EVENTS_API_URL`.
pub(super) const EVENTS_API_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// The environment variable overriding [`EVENTS_API_URL`].
pub(super) const EVENTS_URL_ENV: &str = "RBORG_PAGERDUTY_EVENTS_URL";
/// borgmatic's `DEFAULT_LOGS_PAYLOAD_LIMIT_BYTES` (counted in characters, as borgmatic does).
const LOGS_PAYLOAD_LIMIT: i64 = 10_000;

pub(super) struct PagerDuty {
    integration_key: Result<String, String>,
    send_logs: bool,
    events_url: String,
    hostname: String,
    config_filename: String,
}

impl PagerDuty {
    pub(super) fn new(hook: &rborg_config::model::PagerDuty, context: &Context) -> PagerDuty {
        PagerDuty {
            integration_key: context.credential(&hook.integration_key),
            send_logs: hook.send_logs.unwrap_or(false),
            events_url: (context.env)(EVENTS_URL_ENV)
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| EVENTS_API_URL.to_string()),
            hostname: context.hostname.clone(),
            config_filename: context.config_filename.display().to_string(),
        }
    }
}

impl Monitor for PagerDuty {
    fn ping(&self, state: State, log_tail: &str, dry_run: bool, report: &mut Report) {
        if state != State::Fail {
            report.debug(format!(
                "Ignoring unsupported monitoring state {} in PagerDuty hook",
                state.name()
            ));
            return;
        }
        report.info(format!(
            "Sending failure event to PagerDuty{}",
            dry_run_label(dry_run, "sending")
        ));
        let integration_key = match &self.integration_key {
            Ok(key) => key,
            Err(error) => {
                report.warn(format!("PagerDuty credential error: {error}"));
                return;
            }
        };
        let logs = if self.send_logs {
            log_payload(log_tail, LOGS_PAYLOAD_LIMIT)
        } else {
            String::new()
        };
        // Python's datetime.now(timezone.utc).astimezone().isoformat().
        let timestamp = chrono::Local::now()
            .format("%Y-%m-%dT%H:%M:%S%.6f%:z")
            .to_string();
        let hostname = &self.hostname;
        let payload = json!({
            "routing_key": integration_key,
            "event_action": "trigger",
            "payload": {
                "summary": format!("backup failed on {hostname}"),
                "severity": "error",
                "source": hostname,
                "timestamp": timestamp,
                "component": "borgmatic",
                "group": "backups",
                "class": "backup failure",
                "custom_details": {
                    "hostname": hostname,
                    "configuration filename": self.config_filename,
                    "server time": timestamp,
                    "logs": logs,
                },
            },
        });
        if dry_run {
            return;
        }
        if let Err(error) = Request::post(&self.events_url, payload.to_string())
            .header("Content-Type", "application/json")
            .send()
        {
            report.warn(format!("PagerDuty error: {error}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, run, FAILURE, SUCCESS};
    use super::super::{hostname, Monitors};
    use super::*;
    use rborg_testkit::http_recorder::{RecordedRequest, Recorder};
    use serde_json::Value as Json;
    use std::path::Path;

    fn requests(yaml: &str, states: &[State], log: &str) -> Vec<RecordedRequest> {
        let server = Recorder::start();
        let url = format!("{}/v2/enqueue", server.url());
        let env = move |name: &str| (name == EVENTS_URL_ENV).then(|| url.clone());
        let monitors =
            Monitors::from_config_with_env(&config(yaml), Path::new("/etc/borgmatic/b.yaml"), &env);
        run(&monitors, &server, states, log)
    }

    #[test]
    fn only_failures_trigger_an_event() {
        let yaml =
            "pagerduty: {integration_key: a177cad45bd374409f78906a810a3074, send_logs: true}\n";
        assert!(requests(yaml, &SUCCESS, "x").is_empty());
        let got = requests(yaml, &FAILURE, "first\nsecond\n");
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].method.as_str(), got[0].path.as_str()),
            ("POST", "/v2/enqueue")
        );
        let mut event: Json = serde_json::from_slice(&got[0].body).unwrap();
        let timestamp = event["payload"]["timestamp"].as_str().unwrap().to_string();
        assert!(
            chrono::DateTime::parse_from_rfc3339(&timestamp).is_ok(),
            "{timestamp}"
        );
        event["payload"]["timestamp"] = Json::Null;
        event["payload"]["custom_details"]["server time"] = Json::Null;
        let host = hostname();
        assert_eq!(
            event,
            json!({
                "routing_key": "a177cad45bd374409f78906a810a3074",
                "event_action": "trigger",
                "payload": {
                    "summary": format!("backup failed on {host}"),
                    "severity": "error",
                    "source": host,
                    "timestamp": null,
                    "component": "borgmatic",
                    "group": "backups",
                    "class": "backup failure",
                    "custom_details": {
                        "hostname": host,
                        "configuration filename": "/etc/borgmatic/b.yaml",
                        "server time": null,
                        "logs": "first\nsecond\n",
                    },
                },
            })
        );
    }

    #[test]
    fn logs_only_with_send_logs_and_limited() {
        let got = requests(
            "pagerduty: {integration_key: k}\n",
            &[State::Fail],
            "secret log",
        );
        let event: Json = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(event["payload"]["custom_details"]["logs"], "");
        let long: String = (0..2000).map(|i| format!("line {i:05}\n")).collect();
        let got = requests(
            "pagerduty: {integration_key: k, send_logs: true}\n",
            &[State::Fail],
            &long,
        );
        let event: Json = serde_json::from_slice(&got[0].body).unwrap();
        let logs = event["payload"]["custom_details"]["logs"].as_str().unwrap();
        // 9 996 characters of 11-character lines: the last 908 lines behind "...\n".
        assert_eq!(logs.len(), 4 + 908 * 11);
        assert!(logs.starts_with("...\nline 01092\n") && logs.ends_with("line 01999\n"));
    }

    #[test]
    fn default_url_is_pagerdutys() {
        let c = config("pagerduty: {integration_key: k}\n");
        let monitors = Monitors::from_config_with_env(&c, Path::new("c.yaml"), &|_| None);
        let texts: Vec<String> = monitors
            .ping_messages(State::Fail, "", true)
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(
            texts,
            ["Sending failure event to PagerDuty (dry run; not actually sending)"]
        );
        assert_eq!(EVENTS_API_URL, "https://events.pagerduty.com/v2/enqueue");
    }
}
