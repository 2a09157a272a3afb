//! ntfy (<https://ntfy.sh> or self-hosted), after borgmatic 2.1.10's
//! `hooks/monitoring/ntfy.py`: a `POST` to the server's root URL (default `https://ntfy.sh`)
//! with the JSON publish body `{"topic", "title", "message", "priority", "tags"}` (ntfy's
//! "publish as JSON" API; borgmatic 1.7 used `X-Title`/`X-Priority`/`X-Tags` headers on
//! `server/topic` instead, 2.x switched to JSON). Per state, the `start`/`finish`/`fail`
//! mapping gives title, message, priority (name → 1..5, default 3) and comma-separated tags;
//! without it both texts are "A borgmatic STATE event happened" with tag `borgmatic`. Only
//! `fail` by default. Authentication: `access_token` as a bearer token, else `username` and
//! `password` as basic auth; all three accept `{credential ...}`.

use base64::Engine as _;
use serde_json::{json, Value as Json};

use super::http::Request;
use super::{dry_run_label, wants, Context, Monitor, Report, State};

/// borgmatic's `PRIORITY_NAME_TO_ID` default.
const DEFAULT_PRIORITY: i64 = 3;

fn priority_id(name: &str) -> Option<i64> {
    match name {
        "max" | "urgent" => Some(5),
        "high" => Some(4),
        "default" => Some(3),
        "low" => Some(2),
        "min" => Some(1),
        _ => None,
    }
}

pub(super) struct Ntfy {
    topic: String,
    server: String,
    start: Option<serde_json::Map<String, Json>>,
    finish: Option<serde_json::Map<String, Json>>,
    fail: Option<serde_json::Map<String, Json>>,
    states: Vec<String>,
    /// Resolved credentials: `None` when the option is absent.
    username: Option<Result<String, String>>,
    password: Option<Result<String, String>>,
    access_token: Option<Result<String, String>>,
}

impl Ntfy {
    pub(super) fn new(hook: &rborg_config::model::Ntfy, context: &Context) -> Ntfy {
        let credential = |v: &Option<String>| v.as_deref().map(|v| context.credential(v));
        let map = |m: &Option<std::collections::BTreeMap<String, Json>>| {
            m.as_ref()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        };
        Ntfy {
            topic: hook.topic.clone(),
            server: hook
                .server
                .clone()
                .unwrap_or_else(|| "https://ntfy.sh".to_string()),
            start: map(&hook.start),
            finish: map(&hook.finish),
            fail: map(&hook.fail),
            states: hook.states.clone(),
            username: credential(&hook.username),
            password: credential(&hook.password),
            access_token: credential(&hook.access_token),
        }
    }

    /// The JSON publish body for `state`.
    fn payload(&self, state: State) -> Json {
        let configured = match state {
            State::Start => self.start.as_ref(),
            State::Finish => self.finish.as_ref(),
            State::Fail => self.fail.as_ref(),
            State::Log => None,
        };
        let Some(message) = configured else {
            let text = format!("A borgmatic {} event happened", state.upper_name());
            return json!({
                "topic": self.topic,
                "title": text,
                "message": text,
                "priority": DEFAULT_PRIORITY,
                "tags": ["borgmatic"],
            });
        };
        let priority = message
            .get("priority")
            .and_then(Json::as_str)
            .and_then(priority_id)
            .unwrap_or(DEFAULT_PRIORITY);
        // borgmatic's convert_string_to_array(str(value)).
        let tags: Vec<String> = match message.get("tags") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::String(s)) => split_tags(s),
            Some(other) => split_tags(&other.to_string()),
        };
        json!({
            "topic": self.topic,
            "title": message.get("title").cloned().unwrap_or(Json::Null),
            "message": message.get("message").cloned().unwrap_or(Json::Null),
            "priority": priority,
            "tags": tags,
        })
    }
}

fn split_tags(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

impl Monitor for Ntfy {
    fn ping(&self, state: State, _log_tail: &str, dry_run: bool, report: &mut Report) {
        if !wants(&self.states, &[State::Fail], state) {
            return;
        }
        report.info(format!(
            "Pinging ntfy topic {} with {}{}",
            self.topic,
            state.name(),
            dry_run_label(dry_run, "pinging")
        ));
        report.debug(format!("Using ntfy ping URL {}", self.server));
        let payload = self.payload(state);
        let mut resolved = [None, None, None];
        for (slot, value) in
            resolved
                .iter_mut()
                .zip([&self.username, &self.password, &self.access_token])
        {
            match value {
                Some(Err(error)) => {
                    report.warn(format!("Ntfy credential error: {error}"));
                    return;
                }
                Some(Ok(v)) => *slot = Some(v.as_str()),
                None => {}
            }
        }
        let [username, password, access_token] = resolved;
        let mut request = Request::post(&self.server, payload.to_string())
            .header("Content-Type", "application/json");
        if let Some(token) = access_token {
            if username.is_some_and(|u| !u.is_empty()) || password.is_some_and(|p| !p.is_empty()) {
                report.warn(
                    "ntfy access_token is set but so is username/password, only using access_token",
                );
            }
            request = request.header("Authorization", format!("Bearer {token}"));
        } else {
            match (username, password) {
                (Some(user), Some(pass)) => {
                    let encoded =
                        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                    request = request.header("Authorization", format!("Basic {encoded}"));
                    report.info(format!("Using basic auth with user {user} for ntfy"));
                }
                (Some(_), None) => {
                    report.warn("Password missing for ntfy authentication, defaulting to no auth")
                }
                (None, Some(_)) => {
                    report.warn("Username missing for ntfy authentication, defaulting to no auth")
                }
                (None, None) => {}
            }
        }
        if dry_run {
            return;
        }
        if let Err(error) = request.send() {
            report.warn(format!("ntfy error: {error}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, run, FAILURE, SUCCESS};
    use super::super::Monitors;
    use super::*;
    use rborg_testkit::http_recorder::{RecordedRequest, Recorder};
    use std::path::Path;

    fn requests(yaml: &str, states: &[State]) -> Vec<RecordedRequest> {
        let server = Recorder::start();
        let c = config(&yaml.replace("URL", &server.url()));
        let monitors = Monitors::from_config(&c, Path::new("c.yaml"));
        run(&monitors, &server, states, "logs")
    }

    fn body(r: &RecordedRequest) -> Json {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn default_fail_only_with_default_message() {
        let yaml = "ntfy: {topic: backups, server: URL}\n";
        assert!(requests(yaml, &SUCCESS).is_empty());
        let got = requests(yaml, &FAILURE);
        assert_eq!(got.len(), 1);
        assert_eq!(
            body(&got[0]),
            json!({"topic": "backups", "title": "A borgmatic FAIL event happened",
                   "message": "A borgmatic FAIL event happened", "priority": 3, "tags": ["borgmatic"]})
        );
        assert_eq!(got[0].header("authorization"), None);
    }

    #[test]
    fn success_and_failure_runs_with_messages_and_token() {
        let yaml = "ntfy:\n  topic: backups\n  server: URL\n  access_token: tk_secret\n  states: [start, finish, fail]\n  \
                    start: {title: Started, message: go, priority: min, tags: 'borgmatic, +1'}\n  \
                    fail: {title: Failed, priority: urgent, tags: 'borgmatic,-1,skull'}\n";
        let got = requests(yaml, &SUCCESS);
        assert_eq!(got.len(), 2);
        assert_eq!(
            body(&got[0]),
            json!({"topic": "backups", "title": "Started", "message": "go", "priority": 1,
                   "tags": ["borgmatic", "+1"]})
        );
        assert_eq!(body(&got[1])["title"], "A borgmatic FINISH event happened");
        assert_eq!(got[1].header("authorization"), Some("Bearer tk_secret"));
        let got = requests(yaml, &FAILURE);
        assert_eq!(got.len(), 2);
        assert_eq!(
            body(&got[1]),
            json!({"topic": "backups", "title": "Failed", "message": null, "priority": 5,
                   "tags": ["borgmatic", "-1", "skull"]})
        );
    }

    #[test]
    fn basic_auth_from_credential_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let yaml = format!(
            "ntfy: {{topic: t, server: URL, username: me, password: '{{credential file {}}}'}}\n",
            dir.path().join("pw").display()
        );
        let got = requests(&yaml, &[State::Fail]);
        assert_eq!(got[0].header("authorization"), Some("Basic bWU6czNjcmV0"));
        // An unreadable credential skips the ping with a warning.
        let server = Recorder::start();
        let c = config(&format!(
            "ntfy: {{topic: t, server: {}, access_token: '{{credential file /nonexistent/x}}'}}\n",
            server.url()
        ));
        let warnings = Monitors::from_config(&c, Path::new("c.yaml")).ping(State::Fail, "", false);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("Ntfy credential error: "),
            "{warnings:?}"
        );
        assert!(server.requests().is_empty());
    }
}
