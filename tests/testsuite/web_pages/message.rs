//! The message page: what it shows, its downloads and frame, its conversation, its integrity
//! panel, and the one 404 for everything outside the viewer's scope.

use super::*;

#[test]
fn the_message_page_shows_a_message_in_scope_and_nothing_outside() {
    let a = scope_archive();
    let (invoice, reply, secret, news) = (
        a.seq("invoice.eml"),
        a.seq("reply.eml"),
        a.seq("secret.eml"),
        a.seq("news.eml"),
    );
    let mut web = a.browser();
    web.login("alice");

    let page = web.get(&format!("/messages/{invoice}"));
    assert_eq!(page.status, 200, "{}", page.text());
    let raw_html = page.text();
    assert_safe_html(&raw_html, Kind::Page, "message page");
    let html = page.page();
    assert!(html.contains("<h1>quarterly invoice</h1>"));
    assert!(html.contains("<dl id=\"headers\""));
    assert!(html.contains("Bob <bob@example.org>"));
    assert!(html.contains("<code>invoice@example.org</code>"));
    assert!(!html.contains("id=\"envelope\""), "users see no envelope");
    // The text body, escaped, its link through /out.
    assert!(raw_html.contains("<pre id=\"text-body\">the invoice for alice, see <a href=\"/out?url=https%3A%2F%2Fexample.org%2Fpay%3Fid%3D1%26x%3D2\" rel=\"noopener noreferrer\">"), "{raw_html}");
    assert!(!html.contains("id=\"html-body\""), "no HTML part, no frame");
    // Attachments and the original.
    assert!(html.contains(&format!(
        "<a class=\"attachment\" href=\"/messages/{invoice}/attachments/1\" download>r.pdf</a>"
    )));
    assert!(html.contains(&format!(
        "<a id=\"raw-download\" href=\"/messages/{invoice}/raw\" download>"
    )));
    let pdf = web.get(&format!("/messages/{invoice}/attachments/1"));
    assert_eq!(pdf.status, 200);
    assert_eq!(pdf.body, b"%PDF-1");
    assert!(pdf
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment;"));
    assert_eq!(pdf.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(pdf.header("content-security-policy"), Some("sandbox"));
    let raw = web.get(&format!("/messages/{invoice}/raw"));
    assert_eq!(raw.status, 200);
    assert!(
        raw.body == a.vault.ok(&["show", &invoice.to_string()]),
        "raw differs from show"
    );
    assert_eq!(raw.header("content-type"), Some("message/rfc822"));
    // The conversation: her reply, not carol's secret (which the reply names too).
    let thread = html
        .split("<section id=\"thread\"")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    assert!(
        thread.contains(&format!(
            "<a class=\"thread-msg\" href=\"/messages/{reply}\">Re: quarterly invoice</a>"
        )),
        "{thread}"
    );
    let reply_page = web.get(&format!("/messages/{reply}")).page();
    let reply_thread = reply_page
        .split("<section id=\"thread\"")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    assert!(
        reply_thread.contains(&format!("href=\"/messages/{invoice}\"")),
        "{reply_thread}"
    );
    assert!(
        !reply_thread.contains(&format!("/messages/{secret}")),
        "{reply_thread}"
    );
    assert!(!reply_page.contains("merger"), "{reply_page}");
    // Integrity: verified now, with the proof and checkpoint to take away.
    assert!(
        html.contains("id=\"integrity\"") && html.contains("data-status=\"verified\""),
        "{html}"
    );
    assert!(html.contains("✔ verified"));
    assert!(html.contains(&format!(
        "<a id=\"proof-download\" href=\"/api/v1/messages/{invoice}/proof\""
    )));
    assert!(html.contains("<a id=\"checkpoint-download\" href=\"/api/v1/checkpoint\""));
    let proof = web.get(&format!("/api/v1/messages/{invoice}/proof"));
    assert_eq!(proof.status, 200);
    assert!(web.get("/api/v1/checkpoint").text().lines().count() >= 4);

    // HTML only: a text preview, the sandboxed frame, the blocked tracker said.
    let newsletter = web.get(&format!("/messages/{news}"));
    let raw_html = newsletter.text();
    assert_safe_html(&raw_html, Kind::Page, "newsletter page");
    assert!(raw_html.contains(&format!(
        "<iframe id=\"html-body\" src=\"/messages/{news}/html\" sandbox=\"allow-popups allow-popups-to-escape-sandbox\""
    )));
    assert!(raw_html.contains("id=\"remote-images-note\""));
    assert!(
        raw_html.contains("<pre id=\"text-body\">"),
        "a text preview of the HTML"
    );
    let body = web.get(&format!("/messages/{news}/html"));
    assert_eq!(body.status, 200);
    assert_eq!(
        body.header("content-security-policy"),
        Some("default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox")
    );
    assert_eq!(body.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(body.header("referrer-policy"), Some("no-referrer"));
    let doc = body.text();
    assert_safe_html(&doc, Kind::SandboxedBody, "newsletter body");
    assert!(
        doc.contains("href=\"/out?url=https%3A%2F%2Fexample.org%2Fmore\""),
        "{doc}"
    );
    assert!(!doc.contains("tracker.example"), "{doc}");

    // /out shows the target and never redirects.
    let out = web.get(&format!("/out?url={}", enc("https://example.org/more?a=1")));
    assert_eq!(out.status, 200);
    let html = out.page();
    assert!(
        html.contains("<code id=\"out-target\" class=\"url\">https://example.org/more?a=1</code>"),
        "{html}"
    );
    assert!(
        html.contains("id=\"out-link\" href=\"https://example.org/more?a=1\" rel=\"noreferrer noopener\"")
    );
    assert!(out.header("location").is_none());
    let scheme = web.get(&format!("/out?url={}", enc("javascript:alert(1)")));
    assert!(
        !scheme.text().contains("id=\"out-link\""),
        "no link for other schemes"
    );
    assert_safe_html(&scheme.text(), Kind::Page, "out page");
    // A link clicked in the sandboxed frame opens from an opaque origin, without the session
    // cookie (SameSite=Strict): /out answers without a session too, and shows only the address.
    let mut stranger = a.browser();
    let out = stranger.get(&format!("/out?url={}", enc("https://example.org/more?a=1")));
    assert_eq!(out.status, 200, "{}", out.text());
    assert!(out.page().contains("https://example.org/more?a=1"));
    assert!(!out.text().contains("alice"), "no one's name on it");
    assert_safe_html(&out.text(), Kind::Page, "out page without a session");
    // Errors axum makes itself are pages like the others: a path segment or a query value
    // that is not UTF-8, a method the path does not take.
    for (path, status) in [
        ("/messages/%FF", 400),
        ("/messages/%FF/html", 400),
        ("/search?q=%FF", 400),
    ] {
        let refused = web.get(path);
        assert_eq!(refused.status, status, "{path}: {}", refused.text());
        assert!(
            refused
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{path}: {:?}",
            refused.headers
        );
        assert_safe_html(&refused.text(), Kind::Page, path);
    }

    // carol's message: every path is the page of a message that does not exist.
    let missing = web.get("/messages/999999");
    assert_eq!(missing.status, 404);
    for path in [
        format!("/messages/{secret}"),
        format!("/messages/{secret}/html"),
        "/messages/1".into(),
        "/messages/x".into(),
    ] {
        let refused = web.get(&path);
        assert_eq!(refused.status, 404, "{path}");
        assert_eq!(refused.body, missing.body, "{path}");
    }
    let missing_raw = web.get("/messages/999999/raw");
    for path in [
        format!("/messages/{secret}/raw"),
        format!("/messages/{secret}/attachments/1"),
    ] {
        let refused = web.get(&path);
        assert_eq!(
            (refused.status, &refused.body),
            (404, &missing_raw.body),
            "{path}"
        );
    }
    // Views were audited, the refused ones not.
    let events = audit(&a.vault);
    let by = |action: &str, target: &str| {
        events
            .iter()
            .any(|e| e["actor"] == "alice" && e["action"] == action && e["target"] == target)
    };
    assert!(by("view", &format!("web seq {invoice}")));
    assert!(by("view", &format!("web seq {news} html")));
    assert!(by("raw", &format!("web seq {invoice}")));
    assert!(by("download", &format!("web seq {invoice} attachment 1")));
    assert!(!by("view", &format!("web seq {secret}")));

    // A changed scope applies at the session's next request: without alice@example.com her
    // invoice is the 404 of a missing message, on the page, in the API and in the search.
    a.vault.ok(&[
        "user",
        "addresses",
        "alice",
        "--add",
        "alice@example.net",
        "--remove",
        "alice@example.com",
    ]);
    let gone = web.get(&format!("/messages/{invoice}"));
    assert_eq!(gone.status, 404);
    assert!(gone.body == missing.body, "the page of a missing message");
    assert_eq!(web.get(&format!("/api/v1/messages/{invoice}")).status, 404);
    assert!(web
        .get("/search?q=invoice")
        .page()
        .contains("<p id=\"total\"><strong>0</strong>"));
}

#[test]
fn auditors_see_envelopes_within_their_domains_only() {
    let a = scope_archive();
    let (invoice, secret) = (a.seq("invoice.eml"), a.seq("secret.eml"));
    let mut pm = a.browser();
    pm.login("pm");
    let page = pm.get(&format!("/messages/{invoice}")).page();
    assert!(page.contains("<div id=\"envelope\">"), "{page}");
    let missing = pm.get("/messages/999999");
    let refused = pm.get(&format!("/messages/{secret}"));
    assert_eq!((refused.status, &refused.body), (404, &missing.body));
    assert!(pm
        .get("/search?q=merger")
        .page()
        .contains("<p id=\"total\"><strong>0</strong>"));
    let mut root = a.browser();
    root.login("root");
    let seen = root.get(&format!("/messages/{secret}"));
    assert_eq!(seen.status, 200);
    assert!(seen.page().contains("secret merger plan"));
    // The whole-archive auditor sees carol's message in the reply's conversation.
    let thread = root.get(&format!("/messages/{}", a.seq("reply.eml"))).page();
    assert!(
        thread.contains(&format!("<a class=\"thread-msg\" href=\"/messages/{secret}\">")),
        "{thread}"
    );
}
