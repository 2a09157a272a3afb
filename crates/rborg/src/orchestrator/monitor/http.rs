//! The one HTTP client every monitoring hook uses: `ureq` 3 with rustls (ring, bundled Mozilla
//! roots), so rborg needs neither curl nor the system's OpenSSL to ping a monitor.
//!
//! borgmatic (`hooks/monitoring/*.py`) calls `requests` with `timeout=10` and never retries;
//! rborg keeps the 10 s bound per attempt and retries once, after half a second, only when the
//! first attempt failed fast for a reason that may pass (connection refused or reset, DNS, a
//! 5xx answer). A timeout or a TLS error is never retried, so a dead monitor costs a backup at
//! most about 10 s per ping (and the hooks of one configuration are pinged in parallel, see
//! [`super::Monitors`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The bound on one attempt (connect, send, answer), as borgmatic's `TIMEOUT_SECONDS`.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before the single retry.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Why a request did not get a 2xx/3xx answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum HttpError {
    /// The server answered with an error status.
    #[error("{status} error for url: {url}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The URL requested.
        url: String,
    },
    /// No answer: connection refused, DNS failure, TLS failure, timeout...
    #[error("cannot reach {url}: {message}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What went wrong.
        message: String,
        /// Whether the failure may pass (refused, reset, DNS); not a timeout nor a TLS error.
        transient: bool,
    },
    /// The TLS client certificate or key (Loki mTLS) could not be loaded.
    #[error("cannot load TLS client certificate {path}: {message}")]
    ClientCert {
        /// The PEM file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl HttpError {
    fn retryable(&self) -> bool {
        match self {
            HttpError::Status { status, .. } => *status >= 500,
            HttpError::Transport { transient, .. } => *transient,
            HttpError::ClientCert { .. } => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// One request to a monitoring service.
#[derive(Clone, Debug)]
pub(super) struct Request {
    method: Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    verify_tls: bool,
    client_cert: Option<(PathBuf, PathBuf)>,
}

impl Request {
    /// A `GET url` request.
    pub(super) fn get(url: &str) -> Request {
        Request::new(Method::Get, url, Vec::new())
    }

    /// A `POST url` request with `body`.
    pub(super) fn post(url: &str, body: impl Into<Vec<u8>>) -> Request {
        Request::new(Method::Post, url, body.into())
    }

    fn new(method: Method, url: &str, body: Vec<u8>) -> Request {
        Request {
            method,
            url: url.to_string(),
            headers: Vec::new(),
            body,
            verify_tls: true,
            client_cert: None,
        }
    }

    /// Adds a header.
    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Request {
        self.headers.push((name, value.into()));
        self
    }

    /// `verify_tls: false` accepts any server certificate (borgmatic's `verify=False`).
    pub(super) fn verify_tls(mut self, verify: bool) -> Request {
        self.verify_tls = verify;
        self
    }

    /// A PEM client certificate and key for mutual TLS (Loki's `tls.cert_path`/`key_path`).
    pub(super) fn client_cert(mut self, cert: &Path, key: &Path) -> Request {
        self.client_cert = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// Sends the request, retrying once as described in the module documentation.
    pub(super) fn send(&self) -> Result<(), HttpError> {
        match self.attempt() {
            Err(error) if error.retryable() => {
                std::thread::sleep(RETRY_PAUSE);
                self.attempt()
            }
            other => other,
        }
    }

    fn attempt(&self) -> Result<(), HttpError> {
        let mut tls = ureq::tls::TlsConfig::builder().disable_verification(!self.verify_tls);
        if let Some((cert, key)) = &self.client_cert {
            tls = tls.client_cert(Some(load_client_cert(cert, key)?));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .user_agent(concat!("rborg/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .into();
        let result = match self.method {
            Method::Get => {
                let mut request = agent.get(&self.url);
                for (name, value) in &self.headers {
                    request = request.header(*name, value);
                }
                request.call()
            }
            Method::Post => {
                let mut request = agent.post(&self.url);
                for (name, value) in &self.headers {
                    request = request.header(*name, value);
                }
                request.send(&self.body[..])
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(ureq::Error::StatusCode(status)) => Err(HttpError::Status {
                status,
                url: self.url.clone(),
            }),
            Err(error) => Err(HttpError::Transport {
                url: self.url.clone(),
                transient: transient(&error),
                message: error.to_string(),
            }),
        }
    }
}

/// Whether a failed attempt may succeed if tried again at once: the connection was refused or
/// dropped, or the name did not resolve. Timeouts (retrying would double the stall) and TLS or
/// protocol errors (they would fail the same way) are not.
fn transient(error: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    match error {
        ureq::Error::Io(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
        ),
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        _ => false,
    }
}

fn load_client_cert(cert: &Path, key: &Path) -> Result<ureq::tls::ClientCert, HttpError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| HttpError::ClientCert {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    };
    let bad = |path: &Path, message: String| HttpError::ClientCert {
        path: path.display().to_string(),
        message,
    };
    let cert_pem = read(cert)?;
    let mut chain = Vec::new();
    for item in ureq::tls::parse_pem(&cert_pem) {
        if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| bad(cert, e.to_string()))? {
            chain.push(c);
        }
    }
    if chain.is_empty() {
        return Err(bad(cert, "no certificate in the file".into()));
    }
    let key_pem = read(key)?;
    let private = ureq::tls::PrivateKey::from_pem(&key_pem).map_err(|e| bad(key, e.to_string()))?;
    Ok(ureq::tls::ClientCert::new_with_certs(&chain, private))
}

#[cfg(test)]
mod tests {
    use super::super::tests::closed_port_url;
    use super::*;
    use rborg_testkit::http_recorder::Recorder;
    use std::time::Instant;

    #[test]
    fn posts_body_and_headers() {
        let server = Recorder::start();
        Request::post(&format!("{}/x?y=1", server.url()), "body")
            .header("Content-Type", "text/plain")
            .send()
            .unwrap();
        let got = server.requests();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].method.as_str(), got[0].path.as_str()),
            ("POST", "/x")
        );
        assert_eq!(got[0].query.as_deref(), Some("y=1"));
        assert_eq!(got[0].header("content-type"), Some("text/plain"));
        assert_eq!(got[0].body_text(), "body");
        assert!(got[0].header("user-agent").unwrap().starts_with("rborg/"));
    }

    #[test]
    fn server_errors_are_retried_once_client_errors_never() {
        let server = Recorder::with_status(503);
        let error = Request::get(&server.url()).send().unwrap_err();
        assert!(
            matches!(error, HttpError::Status { status: 503, .. }),
            "{error}"
        );
        assert_eq!(server.requests().len(), 2);
        let server = Recorder::with_status(404);
        let error = Request::get(&server.url()).send().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("404 error for url: {}", server.url())
        );
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn closed_port_fails_fast() {
        let started = Instant::now();
        let error = Request::get(&closed_port_url()).send().unwrap_err();
        assert!(
            matches!(
                error,
                HttpError::Transport {
                    transient: true,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn missing_client_certificate_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let error = Request::get("https://127.0.0.1:1/")
            .client_cert(&dir.path().join("c.pem"), &dir.path().join("k.pem"))
            .send()
            .unwrap_err();
        assert!(matches!(error, HttpError::ClientCert { .. }), "{error}");
    }

    /// `openssl s_server -www` on 127.0.0.1 with a fresh self-signed certificate; with
    /// `client_ca`, it requires a client certificate signed by it. `None` (with a notice) when
    /// the openssl command is missing (it comes with Debian's ca-certificates).
    struct TlsServer {
        child: std::process::Child,
        url: String,
    }

    impl Drop for TlsServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn self_signed(dir: &Path, name: &str) -> Option<(PathBuf, PathBuf)> {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some((cert, key))
    }

    fn tls_server(dir: &Path, client_ca: Option<&Path>) -> Option<TlsServer> {
        let Some((cert, key)) = self_signed(dir, "server") else {
            eprintln!("openssl is not installed: skipping the TLS test");
            return None;
        };
        let port = closed_port_url().rsplit(':').next()?.to_string();
        let mut command = std::process::Command::new("openssl");
        command
            .args(["s_server", "-www", "-quiet", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(ca) = client_ca {
            command.args(["-Verify", "1", "-CAfile"]).arg(ca);
        }
        let server = TlsServer {
            child: command.spawn().ok()?,
            url: format!("https://127.0.0.1:{port}/"),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    #[test]
    fn verify_tls_false_accepts_a_self_signed_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let Some(server) = tls_server(dir.path(), None) else {
            return;
        };
        let error = Request::get(&server.url).send().unwrap_err();
        assert!(
            matches!(
                error,
                HttpError::Transport {
                    transient: false,
                    ..
                }
            ),
            "{error}"
        );
        Request::get(&server.url).verify_tls(false).send().unwrap();
    }

    #[test]
    fn client_certificate_for_mutual_tls() {
        let dir = tempfile::tempdir().unwrap();
        let Some((cert, key)) = self_signed(dir.path(), "client") else {
            eprintln!("openssl is not installed: skipping the TLS test");
            return;
        };
        let Some(server) = tls_server(dir.path(), Some(&cert)) else {
            return;
        };
        let insecure = Request::get(&server.url).verify_tls(false);
        assert!(
            insecure.send().is_err(),
            "the server requires a client certificate"
        );
        insecure.client_cert(&cert, &key).send().unwrap();
    }
}
