//! The web front door (issue #16, increment 1): password login with sessions and CSRF, HTTP
//! Basic and bearer tokens, and the JSON API `/api/v1`, over real sockets against the real
//! binary (ureq as the client; a raw socket where a request must be one no client builds).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine;
use serde_json::Value;

use crate::util::{incompressible_message, Server, Vault};

mod bounds;
mod facets;
mod hostile;
mod login;
mod scope;

/// An answer: status, headers (names lower-case), body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} {}", self.status, String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of cookie `name` as the answer sets it (`name=value; …`).
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .find_map(|(_, v)| v.strip_prefix(&format!("{name}=")).map(|rest| rest.to_string()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client of one web listener, redirects not followed, every status an answer.
pub(crate) struct Web {
    agent: ureq::Agent,
    base: String,
}

impl Web {
    pub(crate) fn http(addr: SocketAddr) -> Web {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            // A fresh connection per request: a connection the server closed after refusing
            // a request (a 413 whose body it did not read) is never reused.
            .max_idle_connections(0)
            .build()
            .into();
        Web {
            agent,
            base: format!("http://{addr}"),
        }
    }

    /// HTTPS, trusting `ca_pem` only.
    fn https(addr: SocketAddr, ca_pem: &[u8]) -> Web {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let ca = Certificate::from_pem(ca_pem).unwrap();
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&[ca]))
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .max_idle_connections(0)
            .tls_config(tls)
            .build()
            .into();
        Web {
            agent,
            base: format!("https://localhost:{}", addr.port()),
        }
    }

    pub(crate) fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        answer(request.call().unwrap_or_else(|e| panic!("GET {path}: {e}")))
    }

    fn post(&self, path: &str, form: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        answer(
            request
                .send(form.as_bytes())
                .unwrap_or_else(|e| panic!("POST {path}: {e}")),
        )
    }
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

fn basic(user: &str, password: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {pair}")
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Every test user's password (also the web pages' and the browser's suites).
pub(crate) const PASSWORD: &str = "correct horse battery";

/// Users: alice (alice@example.com), carol (carol@other.net), pm (auditor of example.com),
/// root (auditor of everything). Shared by the web suites.
pub(crate) fn add_users(vault: &Vault) {
    let pw = format!("{PASSWORD}\n");
    for args in [
        &[
            "user",
            "add",
            "alice",
            "--address",
            "alice@example.com",
            "--password-stdin",
        ][..],
        &[
            "user",
            "add",
            "carol",
            "--address",
            "carol@other.net",
            "--password-stdin",
        ],
        &[
            "user",
            "add",
            "pm",
            "--role",
            "auditor",
            "--domain",
            "example.com",
            "--password-stdin",
        ],
        &[
            "user",
            "add",
            "root",
            "--role",
            "auditor",
            "--all-domains",
            "--password-stdin",
        ],
    ] {
        vault.ok_in(args, Some(pw.as_bytes()));
    }
}

/// A new token of `user`, made with `mailvault user token` (works while `serve` runs).
pub(crate) fn token(vault: &Vault, user: &str) -> String {
    String::from_utf8(vault.ok(&["user", "token", user]))
        .unwrap()
        .trim()
        .to_string()
}

const TO_ALICE: &str = "From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: quarterly invoice\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
the invoice for alice\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0x\r\n--b--\r\n";

const TO_CAROL: &str = "From: x@other.net\r\nTo: carol@other.net\r\nSubject: secret merger plan\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
the invoice nobody else may see\r\n--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"plan.csv\"\r\n\r\n\
a;b\r\n--b--\r\n";

/// A store with the users and three messages (one of several MiB), served on free ports.
struct Archive {
    vault: Vault,
    server: Server,
    web: Web,
    _mail: tempfile::TempDir,
}

fn archive(extra: &[&str]) -> Archive {
    let mut big = b"From: bob@example.org\r\nTo: alice@example.com\r\n".to_vec();
    big.extend(incompressible_message("big report", 3 << 20));
    archive_of(
        vec![
            ("alice.eml", TO_ALICE.as_bytes().to_vec()),
            ("carol.eml", TO_CAROL.as_bytes().to_vec()),
            ("big.eml", big),
        ],
        extra,
    )
}

/// A store with the users and `messages` (file name, bytes), served on free ports.
fn archive_of(messages: Vec<(&str, Vec<u8>)>, extra: &[&str]) -> Archive {
    let vault = Vault::new();
    vault.ok(&["init"]);
    add_users(&vault);
    let mail = tempfile::tempdir().unwrap();
    let count = messages.len();
    let files: Vec<PathBuf> = messages
        .into_iter()
        .map(|(name, bytes)| {
            let path = mail.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect();
    let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    assert_eq!(vault.import(&paths).len(), count);
    let server = vault.serve(extra);
    let web = Web::http(server.web.expect("web listener"));
    Archive {
        vault,
        server,
        web,
        _mail: mail,
    }
}

/// The seq of the one message `q` finds for the whole-archive auditor.
fn seq_of(web: &Web, root: &str, q: &str) -> u64 {
    let found = web.get(&format!("/api/v1/search?q={q}"), &[("authorization", root)]);
    assert_eq!(found.status, 200, "{}", found.text());
    let found = found.json();
    assert_eq!(found["total"], 1, "{q}: {found}");
    found["hits"][0]["seq"].as_u64().unwrap()
}

/// `mailvault audit --json`, one value per event.
fn audit(vault: &Vault) -> Vec<Value> {
    String::from_utf8(vault.ok(&["audit", "--json"]))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Sends `head` on a new connection and returns the answer's status code (0 for none).
fn raw_request(addr: SocketAddr, head: &str) -> u16 {
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    socket.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}
