//! Hostile requests get a clear error and the server goes on.

use super::*;

#[test]
fn hostile_input_gets_a_clear_error_and_the_server_goes_on() {
    let a = archive(&[]);
    let web = &a.web;
    let alice = bearer(&token(&a.vault, "alice"));
    let auth = [("authorization", alice.as_str())];
    let bad = web.get("/api/v1/search?q=from:alice+(invoice", &auth);
    assert_eq!(bad.status, 400);
    let bad = bad.json();
    assert_eq!(bad["error"], "bad-query");
    // `from:alice (invoice` is 19 characters: the missing `)` is found at its end.
    assert_eq!(bad["position"], 20, "{bad}");
    assert!(
        bad["detail"].as_str().unwrap().contains("the '(' at position 12"),
        "{bad}"
    );
    for (path, says) in [
        ("/api/v1/search?q=invoice&cursor=garbage", "cursor"),
        ("/api/v1/search?q=invoice&limit=99999999999999999999999", "limit"),
        ("/api/v1/search?q=invoice&limit=501", "limit"),
        ("/api/v1/search?q=invoice&limit=0", "limit"),
        ("/api/v1/search?q=invoice&sort=sideways", "sort"),
        ("/api/v1/search?q=invoice&qq=1", "qq"),
        ("/api/v1/search", "q is missing"),
        ("/api/v1/messages/1/attachments/x", "attachment"),
    ] {
        let refused = web.get(path, &auth);
        assert_eq!(refused.status, 400, "{path}: {}", refused.text());
        assert!(
            refused.json()["detail"].as_str().unwrap().contains(says),
            "{path}: {}",
            refused.text()
        );
    }
    // 60 KiB of query: a JSON 400; 1 MiB: beyond what a URI may be, refused by the HTTP layer.
    let long = format!("/api/v1/search?q={}", "a".repeat(60 << 10));
    let refused = web.get(&long, &auth);
    assert_eq!(refused.status, 400);
    assert!(refused.json()["detail"].as_str().unwrap().contains("at most"));
    let addr = a.server.web.unwrap();
    let huge = format!(
        "GET /api/v1/search?q={} HTTP/1.1\r\nHost: x\r\nAuthorization: {alice}\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let code = raw_request(addr, &huge);
    assert!(code == 414 || code == 400, "{code}");
    // A body beyond the limit is refused before anything reads it: its length alone gets
    // the 413 (sending the body too would race the server's close of the connection).
    let big_form = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        (1 << 20) + 20
    );
    assert_eq!(raw_request(addr, &big_form), 413);
    // Still up, still answering.
    assert_eq!(web.get("/api/v1/search?q=invoice", &auth).json()["total"], 1);
    assert_eq!(web.get("/api/v1/nothing-here", &auth).status, 404);
}
