//! Bounds a hostile client runs into: forged cursors, paths and query strings that do not
//! decode, methods a path does not take, connections from one network, bodies trickled a byte
//! at a time; and downloads that must be the bytes that were attached.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

#[test]
fn forged_cursors_undecodable_input_and_wrong_methods_get_json_errors() {
    let a = archive(&[]);
    let web = &a.web;
    let alice = bearer(&token(&a.vault, "alice"));
    let auth = [("authorization", alice.as_str())];
    let cursor = |text: &str| URL_SAFE_NO_PAD.encode(text);
    // A relevance page past the first 10,000 hits: tantivy would reserve room for every hit
    // before it (a forged offset of 10^13 was enough to abort the whole server).
    for offset in ["10001", "10000000000000", "18446744073709551615"] {
        let path = format!(
            "/api/v1/search?q=invoice&sort=relevance&cursor={}",
            cursor(&format!("1:r:{offset}"))
        );
        let refused = web.get(&path, &auth);
        assert_eq!(refused.status, 400, "{offset}: {}", refused.text());
        let json = refused.json();
        assert_eq!(json["error"], "bad-request");
        assert!(
            json["detail"].as_str().unwrap().contains("first 10000 hits only"),
            "{json}"
        );
    }
    // Key cursors at the ends of their ranges are just positions: nothing after them.
    for (sort, text) in [
        ("newest", "1:n:-9223372036854775808:0"),
        ("oldest", "1:o:9223372036854775807:18446744073709551615"),
        ("size", "1:s:-9223372036854775808:0"),
    ] {
        let path = format!("/api/v1/search?q=invoice&sort={sort}&cursor={}", cursor(text));
        let answer = web.get(&path, &auth);
        assert_eq!(answer.status, 200, "{sort}: {}", answer.text());
        assert_eq!(answer.json()["hits"].as_array().unwrap().len(), 0, "{sort}");
    }
    // Percent-encoding that is not UTF-8: refused, not searched for as U+FFFD.
    for path in [
        "/api/v1/search?q=%FF",
        "/api/v1/search?q=invoice&sort=%C3%28",
        "/api/v1/search?q=invoice&cursor=%FF",
    ] {
        let refused = web.get(path, &auth);
        assert_eq!(refused.status, 400, "{path}: {}", refused.text());
        assert!(
            refused.json()["detail"].as_str().unwrap().contains("not UTF-8"),
            "{path}"
        );
    }
    // Errors axum makes itself are JSON too: a path segment that is not UTF-8, a method the
    // path does not take. None is cached.
    for (path, status) in [
        ("/api/v1/messages/%FF", 400),
        ("/api/v1/messages/%FF/raw", 400),
        ("/api/v1/messages/1/attachments/%FF%FE", 400),
    ] {
        let answer = web.get(path, &auth);
        assert_eq!(answer.status, status, "{path}: {}", answer.text());
        assert_eq!(answer.header("content-type"), Some("application/json"), "{path}");
        assert_eq!(answer.json()["error"], "bad-request", "{path}");
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
    }
    let wrong = web.post("/api/v1/search?q=invoice", "", &auth);
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.json()["error"], "method-not-allowed");
    assert!(
        wrong.header("allow").is_some_and(|m| m.contains("GET")),
        "{:?}",
        wrong.headers
    );
    // Answers with mail in them are never cached either.
    let found = web.get("/api/v1/search?q=invoice", &auth);
    assert_eq!(found.status, 200);
    assert_eq!(found.header("cache-control"), Some("no-store"));
    // Still up.
    assert_eq!(found.json()["total"], 1);
}

#[test]
fn one_network_cannot_take_every_connection_and_a_trickled_body_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailvault.toml");
    std::fs::write(&config, "[web]\nmax_connections_per_ip = 4\n").unwrap();
    let a = archive(&["--config", config.to_str().unwrap()]);
    let addr = a.server.web.unwrap();
    let alice = bearer(&token(&a.vault, "alice"));
    // A body trickled a byte at a time: 408 after the 30 s the body has, and the connection
    // closes; its slot is free again.
    let mut trickle = TcpStream::connect(addr).unwrap();
    trickle
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\nuser=al",
        )
        .unwrap();
    // Four connections from 127.0.0.1 (the trickle and three idle ones): a fifth is closed
    // at once, unanswered.
    let idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let refused = wait_for_refusal(addr);
    assert!(refused, "a fifth connection from the same network was served");
    drop(idle);
    // The trickled body's answer.
    trickle.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut answer = Vec::new();
    let _ = trickle.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 30 s"), "{answer}");
    // With the slots free again, requests are served.
    let web = Web::http(addr);
    let found = web.get("/api/v1/search?q=invoice", &[("authorization", &alice)]);
    assert_eq!(found.json()["total"], 1);
}

/// Whether a new connection is closed by the server without an answer to a request. The
/// four earlier ones are accepted asynchronously: a few tries give the server time to count
/// them.
fn wait_for_refusal(addr: SocketAddr) -> bool {
    for _ in 0..50 {
        let mut extra = TcpStream::connect(addr).unwrap();
        extra.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = extra.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 64];
        match extra.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    false
}

/// A CSV in Latin-1, as a bookkeeping program writes it: é, ü, ß, a byte that is no character
/// in UTF-8, CRLF lines.
const LATIN1_CSV: &[u8] = b"name;city\r\nRen\xe9;M\xfcnchen\r\nStra\xdfe;\xff\r\n";

#[test]
fn attachments_download_as_attached_and_their_names_cannot_disguise_them() {
    let quoted: String = LATIN1_CSV
        .iter()
        .map(|b| match b {
            b'\r' | b'\n' | b'!'..=b'<' | b'>'..=b'~' => (*b as char).to_string(),
            _ => format!("={b:02X}"),
        })
        .collect();
    let mut message = b"From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: bookkeeping\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
the files\r\n--b\r\nContent-Type: text/csv; charset=iso-8859-1\r\n\
Content-Disposition: attachment; filename=\"konten.csv\"\r\n\r\n"
        .to_vec();
    message.extend_from_slice(LATIN1_CSV);
    message.extend_from_slice(
        format!(
            "\r\n--b\r\nContent-Type: text/csv; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\
Content-Disposition: attachment; filename*=UTF-8''rechnung%E2%80%AEfdp.exe\r\n\r\n{quoted}\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n--b--\r\n"
        )
        .as_bytes(),
    );
    let a = archive_of(vec![("books.eml", message)], &[]);
    let alice = bearer(&token(&a.vault, "alice"));
    let auth = [("authorization", alice.as_str())];
    let seq = seq_of(&a.web, &alice, "subject:bookkeeping");
    let meta = a.web.get(&format!("/api/v1/messages/{seq}"), &auth).json();
    let attachments: Vec<&Value> = meta["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["attachment"].is_u64())
        .collect();
    assert_eq!(attachments.len(), 3, "{meta}");
    // Both CSVs, unencoded and quoted-printable, download as the Latin-1 bytes attached (not
    // converted to UTF-8), and the listed size is theirs.
    for n in 1..=2 {
        let file = a
            .web
            .get(&format!("/api/v1/messages/{seq}/attachments/{n}"), &auth);
        assert_eq!(file.status, 200);
        assert_eq!(file.body, LATIN1_CSV, "attachment {n}");
        assert_eq!(attachments[n - 1]["size"], LATIN1_CSV.len(), "attachment {n}");
        assert_eq!(file.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(file.header("content-security-policy"), Some("sandbox"));
    }
    // A right-to-left override would show "rechnungexe.pdf": it is taken out of the name shown
    // and of the name to save under.
    assert_eq!(attachments[1]["name"], "rechnungfdp.exe", "{meta}");
    let disguised = a.web.get(&format!("/api/v1/messages/{seq}/attachments/2"), &auth);
    let disposition = disguised.header("content-disposition").unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(disposition.contains("rechnungfdp.exe"), "{disposition}");
    assert!(!disposition.contains("%E2%80%AE"), "{disposition}");
    // An empty name is no name: the download gets the numbered default.
    assert!(attachments[2].get("name").is_none(), "{meta}");
    let unnamed = a.web.get(&format!("/api/v1/messages/{seq}/attachments/3"), &auth);
    assert_eq!(unnamed.body, [0, 1, 2, 255]);
    assert!(
        unnamed
            .header("content-disposition")
            .unwrap()
            .contains("attachment-3"),
        "{:?}",
        unnamed.headers
    );
}
