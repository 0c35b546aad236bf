//! A small HTTP/1.1 client for the benchmarks' set-up (one request per connection, plain
//! HTTP on loopback): logging in like a browser and checking an answer before a load tool
//! times it. The load itself is wrk's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::{fail, BenchResult};

/// Longest answer read (a search page with 500 hits is well under it).
const MAX_ANSWER: u64 = 64 << 20;

/// An answer: status code, headers (names lower-case), body (de-chunked).
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name=value` of the `Set-Cookie` that sets cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .filter_map(|(_, v)| v.split(';').next())
            .find(|pair| pair.split_once('=').is_some_and(|(n, _)| n.trim() == name))
            .map(|pair| pair.trim().to_string())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to `addr` (`host:port`) and reads the whole answer.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> BenchResult<Answer> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| format!("{method} {path}: not an HTTP answer ({} bytes)", raw.len()).into())
}

/// `GET path`.
pub fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> BenchResult<Answer> {
    request(addr, "GET", path, headers, b"")
}

fn parse(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Percent-encodes everything but letters and digits (a query in a URL, a form field).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Logs in to the web UI at `addr` as a browser does: `GET /login` for the form's CSRF
/// token (also its cookie), `POST /login` with user, password and token from this origin.
/// Returns the `Cookie` header value of the session (`mailvault_session=…`), checked to open
/// a page (not the redirect to `/login` a page without a session gets).
pub fn browser_login(addr: &str, user: &str, password: &str) -> BenchResult<String> {
    let form = get(addr, "/login", &[])?;
    let Some(login_cookie) = form.cookie("mailvault_login_csrf") else {
        return fail(format!("GET /login: {} without a CSRF cookie", form.status));
    };
    let token = login_cookie.split_once('=').map_or("", |(_, t)| t).to_string();
    if form.status != 200 || !form.text().contains(&format!("value=\"{token}\"")) {
        return fail(format!(
            "GET /login: {} without the token in the form",
            form.status
        ));
    }
    let origin = format!("http://{addr}");
    let body = format!(
        "user={}&password={}&csrf={}",
        encode(user),
        encode(password),
        encode(&token)
    );
    let answer = request(
        addr,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &login_cookie),
            ("Origin", &origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        body.as_bytes(),
    )?;
    let Some(session) = answer
        .cookie("mailvault_session")
        .filter(|_| answer.status == 303)
    else {
        return fail(format!(
            "POST /login as {user}: {} {}",
            answer.status,
            answer.text().chars().take(300).collect::<String>()
        ));
    };
    let page = get(addr, "/search", &[("Cookie", &session)])?;
    if page.status != 200 {
        return fail(format!(
            "GET /search with {user}'s session: {} (location {:?})",
            page.status,
            page.header("location")
        ));
    }
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_with_cookies_and_chunks() {
        let raw = b"HTTP/1.1 303 See Other\r\nSet-Cookie: a=1; Path=/\r\nset-cookie: mailvault_session=xyz; HttpOnly\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let a = parse(raw).expect("parses");
        assert_eq!(a.status, 303);
        assert_eq!(
            a.cookie("mailvault_session").as_deref(),
            Some("mailvault_session=xyz")
        );
        assert_eq!(a.cookie("a").as_deref(), Some("a=1"));
        assert_eq!(a.body, b"abcde");
        assert_eq!(encode("a b+ü"), "a%20b%2B%C3%BC");
    }
}
