//! Grafana Loki, after borgmatic 2.1.10's `hooks/monitoring/loki.py`: log lines `POST`ed to
//! the push API URL as `{"streams": [{"stream": LABELS, "values": [[NS_TIMESTAMP, LINE]...]}]}`.
//! Label values `__hostname`, `__config` and `__config_path` become the host name, the
//! configuration file's name and its path. Each state adds the line "Started backup",
//! "Finished backup" or "Failed backup" (the log state adds nothing).
//!
//! Without `send_logs`, each such line is sent at once. With `send_logs: true`, borgmatic
//! buffers every log line and sends the buffer whenever it exceeds 100 lines and at the end;
//! rborg, which gets the run's log from its caller at the end, keeps the "Started backup" line
//! and sends it, the log lines and the final line at finish/fail, in batches of 101 lines as
//! borgmatic's flushes would cut them. `tls.cert_path`/`tls.key_path` give a client
//! certificate for mutual TLS; both or neither must be set.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value as Json};

use super::http::Request;
use super::{Context, Monitor, Report, State};

/// borgmatic's `MAX_BUFFER_LINES`: the buffer is sent once it holds more lines than this.
const MAX_BUFFER_LINES: usize = 100;

pub(super) struct Loki {
    url: String,
    labels: Map<String, Json>,
    send_logs: bool,
    /// `Err` when the TLS options are inconsistent: nothing is sent, every ping warns.
    client_cert: Result<Option<(String, String)>, String>,
    /// Lines waiting to be sent (nanosecond timestamp, line).
    buffer: Mutex<Vec<(u128, String)>>,
}

impl Loki {
    pub(super) fn new(hook: &rborg_config::model::Loki, context: &Context) -> Loki {
        let config_path = context.config_filename.display().to_string();
        let config_name = context
            .config_filename
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| config_path.clone());
        let labels = hook
            .labels
            .iter()
            .map(|(key, value)| {
                let value = match value.as_str() {
                    "__hostname" => context.hostname.clone(),
                    "__config" => config_name.clone(),
                    "__config_path" => config_path.clone(),
                    other => other.to_string(),
                };
                (key.clone(), Json::String(value))
            })
            .collect();
        let tls_path = |name: &str| {
            hook.tls
                .as_ref()
                .and_then(|t| t.get(name))
                .and_then(Json::as_str)
                .filter(|p| !p.is_empty())
                .map(String::from)
        };
        let client_cert = match (tls_path("cert_path"), tls_path("key_path")) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            _ => Err("Invalid Loki TLS configuration: cert_path and key_path must both be set or both be unset".to_string()),
        };
        Loki {
            url: hook.url.clone(),
            labels,
            send_logs: hook.send_logs.unwrap_or(false),
            client_cert,
            buffer: Mutex::new(Vec::new()),
        }
    }

    /// Sends `lines` as borgmatic's `Loki_log_buffer.flush` would, in batches of
    /// `MAX_BUFFER_LINES + 1` lines.
    fn flush(&self, lines: &[(u128, String)], dry_run: bool, report: &mut Report) {
        if dry_run {
            report.info("Skipped uploading logs to Loki due to dry run");
            return;
        }
        let client_cert = match &self.client_cert {
            Ok(c) => c,
            Err(error) => {
                report.warn(error.clone());
                return;
            }
        };
        for batch in lines.chunks(MAX_BUFFER_LINES + 1) {
            let values: Vec<Json> = batch
                .iter()
                .map(|(ts, line)| json!([ts.to_string(), line]))
                .collect();
            let body = json!({"streams": [{"stream": self.labels, "values": values}]});
            let mut request = Request::post(&self.url, body.to_string())
                .header("Content-Type", "application/json");
            if let Some((cert, key)) = client_cert {
                request = request.client_cert(cert.as_ref(), key.as_ref());
            }
            if let Err(error) = request.send() {
                report.warn(format!("Failed to upload logs to Loki: {error}"));
                return;
            }
        }
    }
}

/// Nanoseconds since the epoch, strictly after `last` (Loki drops a line whose timestamp and
/// text equal an earlier one's, so every line gets its own).
fn timestamp_after(last: Option<u128>) -> u128 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    match last {
        Some(last) if now <= last => last + 1,
        _ => now,
    }
}

impl Monitor for Loki {
    fn ping(&self, state: State, log_tail: &str, dry_run: bool, report: &mut Report) {
        let line = match state {
            State::Start => "Started backup",
            State::Finish => "Finished backup",
            State::Fail => "Failed backup",
            State::Log => return,
        };
        let Ok(mut buffer) = self.buffer.lock() else {
            return;
        };
        let push = |buffer: &mut Vec<(u128, String)>, text: &str| {
            let ts = timestamp_after(buffer.last().map(|(t, _)| *t));
            buffer.push((ts, text.to_string()));
        };
        if state != State::Start && self.send_logs {
            for log_line in log_tail.lines() {
                push(&mut buffer, log_line);
            }
        }
        push(&mut buffer, line);
        // Without send_logs every line goes out at once; with it, the run's lines go out at
        // its end (finish or fail).
        if !self.send_logs || state != State::Start {
            let lines = std::mem::take(&mut *buffer);
            drop(buffer);
            self.flush(&lines, dry_run, report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, run, FAILURE, SUCCESS};
    use super::super::{hostname, Monitors};
    use super::*;
    use rborg_testkit::http_recorder::{RecordedRequest, Recorder};
    use std::path::Path;

    const LABELS: &str =
        "labels: {app: borgmatic, config: __config, path: __config_path, host: __hostname}";

    fn requests(options: &str, states: &[State], log: &str) -> Vec<RecordedRequest> {
        let server = Recorder::start();
        let c = config(&format!(
            "loki: {{url: {}/loki/api/v1/push, {LABELS}{options}}}\n",
            server.url()
        ));
        let monitors = Monitors::from_config(&c, Path::new("/etc/borgmatic.d/home.yaml"));
        run(&monitors, &server, states, log)
    }

    /// The lines of a push request, after checking its form and labels.
    fn lines(r: &RecordedRequest) -> Vec<String> {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/loki/api/v1/push")
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body: Json = serde_json::from_slice(&r.body).unwrap();
        let streams = body["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 1);
        assert_eq!(
            streams[0]["stream"],
            json!({"app": "borgmatic", "config": "home.yaml",
                   "path": "/etc/borgmatic.d/home.yaml", "host": hostname()})
        );
        let mut last = 0u128;
        streams[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let ts: u128 = v[0].as_str().unwrap().parse().unwrap();
                assert!(ts > last, "timestamps increase");
                last = ts;
                v[1].as_str().unwrap().to_string()
            })
            .collect()
    }

    #[test]
    fn without_send_logs_each_state_is_one_push() {
        let got = requests("", &SUCCESS, "not sent");
        let got: Vec<Vec<String>> = got.iter().map(lines).collect();
        assert_eq!(got, [["Started backup"], ["Finished backup"]]);
        let got = requests("", &FAILURE, "not sent");
        let got: Vec<Vec<String>> = got.iter().map(lines).collect();
        assert_eq!(got, [["Started backup"], ["Failed backup"]]);
    }

    #[test]
    fn with_send_logs_lines_go_in_batches_of_101() {
        let got = requests(", send_logs: true", &FAILURE, "one\ntwo\n");
        let got: Vec<Vec<String>> = got.iter().map(lines).collect();
        assert_eq!(got, [["Started backup", "one", "two", "Failed backup"]]);
        let log: String = (0..150).map(|i| format!("l{i}\n")).collect();
        let got = requests(", send_logs: true", &SUCCESS, &log);
        let got: Vec<Vec<String>> = got.iter().map(lines).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), 101);
        assert_eq!(
            (got[0][0].as_str(), got[0][100].as_str()),
            ("Started backup", "l99")
        );
        assert_eq!(got[1].len(), 51);
        assert_eq!(got[1][50], "Finished backup");
    }

    #[test]
    fn inconsistent_tls_options_warn_and_send_nothing() {
        let server = Recorder::start();
        let c = config(&format!(
            "loki: {{url: {}/push, labels: {{a: b}}, tls: {{cert_path: /x.pem}}}}\n",
            server.url()
        ));
        let warnings = Monitors::from_config(&c, Path::new("c.yaml")).ping(State::Start, "", false);
        assert_eq!(
            warnings,
            ["Invalid Loki TLS configuration: cert_path and key_path must both be set or both be unset"]
        );
        assert!(server.requests().is_empty());
    }
}
