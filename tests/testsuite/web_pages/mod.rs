//! The web pages (issue #16, increment 2) over real sockets against the real binary: login,
//! search, message, auditor pages, the language switch, the XSS fixtures checked at the HTML
//! level (the browser tests run them in Chromium). A session cookie is the only credential
//! (pages are for browsers).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::util::{fixtures, Server, Vault};

mod auditor;
mod export;
mod html_check;
mod message;
mod search;
mod session;
mod xss;

pub use html_check::{assert_safe_html, Kind};

/// An answer: status, headers (names lower-case), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value (up to `;`) of cookie `name` as the answer sets it.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .find_map(|(_, v)| v.strip_prefix(&format!("{name}=")))
            .map(|rest| rest.split(';').next().unwrap_or_default().to_string())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body with the character references of escaped text decoded (templates may write
    /// `"` as `&quot;` or `&#34;`): for comparing what a page says, never for safety checks.
    pub fn page(&self) -> String {
        unescape(&self.text())
    }
}

/// `html` with the references an escaper writes turned back into characters.
pub fn unescape(html: &str) -> String {
    let mut out = html.to_string();
    for (from, to) in [
        ("&quot;", "\""),
        ("&#34;", "\""),
        ("&#x22;", "\""),
        ("&#39;", "'"),
        ("&#x27;", "'"),
        ("&lt;", "<"),
        ("&#60;", "<"),
        ("&gt;", ">"),
        ("&#62;", ">"),
        ("&#38;", "&"),
        ("&amp;", "&"),
    ] {
        out = out.replace(from, to);
    }
    out
}

/// A browser of sorts: one web listener, its cookies, redirects not followed.
pub struct Browser {
    agent: ureq::Agent,
    base: String,
    cookies: HashMap<String, String>,
    /// Headers sent with every request (e.g. `accept-language`).
    pub extra: Vec<(String, String)>,
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Browser {
        Browser::with(format!("http://{addr}"), None)
    }

    /// Over HTTPS, trusting `ca_pem` only (the server's certificate names `localhost`).
    pub fn https(addr: SocketAddr, ca_pem: &[u8]) -> Browser {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let ca = Certificate::from_pem(ca_pem).unwrap();
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&[ca]))
            .build();
        Browser::with(format!("https://localhost:{}", addr.port()), Some(tls))
    }

    fn with(base: String, tls: Option<ureq::tls::TlsConfig>) -> Browser {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .max_idle_connections(0);
        if let Some(tls) = tls {
            config = config.tls_config(tls);
        }
        Browser {
            agent: config.build().into(),
            base,
            cookies: HashMap::new(),
            extra: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, answer: &Answer) {
        for (k, v) in &answer.headers {
            if k != "set-cookie" {
                continue;
            }
            let pair = v.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || v.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
        }
    }

    pub fn get(&mut self, path: &str) -> Answer {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if !self.cookies.is_empty() {
            request = request.header("cookie", self.cookie_header());
        }
        for (k, v) in &self.extra {
            request = request.header(k, v);
        }
        let answer = answer(request.call().unwrap_or_else(|e| panic!("GET {path}: {e}")));
        self.keep(&answer);
        answer
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded");
        if !self.cookies.is_empty() {
            request = request.header("cookie", self.cookie_header());
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let answer = answer(
            request
                .send(body.as_bytes())
                .unwrap_or_else(|e| panic!("POST {path}: {e}")),
        );
        self.keep(&answer);
        answer
    }

    /// Logs in through the form; returns the session's CSRF token (as the pages carry it).
    pub fn login(&mut self, user: &str) -> String {
        let form = self.get("/login");
        assert_eq!(form.status, 200);
        let csrf = login_token(&form.text());
        let done = self.post(
            "/login",
            &[("user", user), ("password", PASSWORD), ("csrf", &csrf)],
            &[],
        );
        assert_eq!(done.status, 303, "login {user}: {}", done.text());
        assert_eq!(done.header("location"), Some("/search"));
        let page = self.get("/search");
        assert_eq!(page.status, 200);
        value_of(&page.text(), "csrf")
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

/// Percent-encodes a form or query value.
pub fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The CSRF token of the login form.
pub fn login_token(html: &str) -> String {
    let form = html.find("<form id=\"login\"").expect("the login form");
    value_of(&html[form..], "csrf")
}

/// The `value` of the first input named `name` in a page.
pub fn value_of(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no input {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

pub(crate) use crate::web_api::PASSWORD;

/// A store with users alice (alice@example.com), carol (carol@other.net), pm (auditor of
/// example.com), root (auditor of everything), and `mail` imported; served on free ports.
pub struct Archive {
    pub vault: Vault,
    pub server: Server,
    /// Seq of each imported file, by file name.
    pub seqs: HashMap<String, u64>,
    _mail: tempfile::TempDir,
}

impl Archive {
    pub fn browser(&self) -> Browser {
        Browser::new(self.server.web.expect("web listener"))
    }

    pub fn seq(&self, name: &str) -> u64 {
        self.seqs[name]
    }
}

/// `mail`: (file name, bytes), plus every `.eml` of `fixtures/xss/` if `xss`.
pub fn archive(mail: &[(&str, &[u8])], xss: bool) -> Archive {
    let vault = Vault::new();
    vault.ok(&["init"]);
    crate::web_api::add_users(&vault);
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for (name, bytes) in mail {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        files.push(path);
    }
    if xss {
        let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures().join("xss"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        files.extend(names);
    }
    let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    let imported = vault.import(&paths);
    let seqs = files
        .iter()
        .zip(&imported)
        .map(|(path, i)| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, i.seq.expect("stored"))
        })
        .collect();
    let server = vault.serve(&[]);
    Archive {
        vault,
        server,
        seqs,
        _mail: dir,
    }
}

/// `mailvault audit --json`, one value per event.
pub fn audit(vault: &Vault) -> Vec<serde_json::Value> {
    String::from_utf8(vault.ok(&["audit", "--json"]))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Mail of the scope tests: alice's invoice with an attachment and a reply to it (a thread),
/// carol's secret (whose Message-ID alice's reply also names), and a message with HTML only.
pub const ALICE_INVOICE: &str = "From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: quarterly invoice\r\n\
Date: Mon, 02 Dec 2024 09:00:00 +0000\r\nMessage-ID: <invoice@example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
the invoice for alice, see https://example.org/pay?id=1&x=2\r\n--b\r\nContent-Type: application/pdf\r\n\
Content-Disposition: attachment; filename=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0x\r\n--b--\r\n";

pub const ALICE_REPLY: &str = "From: alice@example.com\r\nTo: Bob <bob@example.org>\r\nSubject: Re: quarterly invoice\r\n\
Date: Tue, 03 Dec 2024 09:00:00 +0000\r\nMessage-ID: <reply@example.com>\r\nIn-Reply-To: <invoice@example.org>\r\n\
References: <secret@other.net> <invoice@example.org>\r\n\r\npaid the invoice\r\n";

pub const CAROL_SECRET: &str = "From: x@other.net\r\nTo: carol@other.net\r\nSubject: secret merger plan\r\n\
Date: Sun, 01 Dec 2024 09:00:00 +0000\r\nMessage-ID: <secret@other.net>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n\
<p>the invoice nobody else may see</p>\r\n--b\r\nContent-Type: text/csv\r\n\
Content-Disposition: attachment; filename=\"plan.csv\"\r\n\r\na;b\r\n--b--\r\n";

pub const ALICE_HTML: &str = "From: news@example.org\r\nTo: alice@example.com\r\nSubject: newsletter\r\n\
Date: Wed, 04 Dec 2024 09:00:00 +0000\r\nMessage-ID: <news@example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<h1>News</h1><p>Read <a href=\"https://example.org/more\">more</a>\
<img src=\"https://tracker.example/pixel.gif\"></p>\r\n";

/// The scope tests' archive.
pub fn scope_archive() -> Archive {
    archive(
        &[
            ("invoice.eml", ALICE_INVOICE.as_bytes()),
            ("reply.eml", ALICE_REPLY.as_bytes()),
            ("secret.eml", CAROL_SECRET.as_bytes()),
            ("news.eml", ALICE_HTML.as_bytes()),
        ],
        false,
    )
}
