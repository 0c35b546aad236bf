//! The auditors' pages: status for auditors, trail and users for auditors of everything, and
//! the 404 of a missing page for everyone else.

use super::*;

#[test]
fn auditor_pages_are_for_auditors_and_a_404_for_everyone_else() {
    let a = scope_archive();
    let mut alice = a.browser();
    alice.login("alice");
    alice.get("/search?q=invoice");
    let missing = alice.get("/no-such-page");
    assert_eq!(missing.status, 404);
    for path in ["/status", "/audit", "/users", "/audit?user=alice"] {
        let refused = alice.get(path);
        assert_eq!((refused.status, &refused.body), (404, &missing.body), "{path}");
    }
    let text = missing.text();
    assert!(
        !text.contains("href=\"/status\""),
        "no auditor menu for users: {text}"
    );

    // A domain auditor: status (counts within the scope), not the trail or the users.
    let mut pm = a.browser();
    pm.login("pm");
    let status = pm.get("/status");
    assert_eq!(status.status, 200);
    let html = status.page();
    assert_safe_html(&status.text(), Kind::Page, "status");
    assert!(html.contains("<dl id=\"status\""));
    // example.com's three messages (invoice, reply, newsletter), not other.net's.
    assert!(html.contains("<dd id=\"status-messages\">3</dd>"), "{html}");
    assert!(html.contains("No verify run is recorded"), "{html}");
    let pm_missing = pm.get("/no-such-page");
    for path in ["/audit", "/users"] {
        let refused = pm.get(path);
        assert_eq!((refused.status, &refused.body), (404, &pm_missing.body), "{path}");
    }

    // The whole-archive auditor: everything; the last verify shows once there is one.
    let (code, _) = a.vault.verify(&[]);
    assert_eq!(code, 0);
    let mut root = a.browser();
    root.login("root");
    let html = root.get("/status").page();
    assert!(html.contains("<dd id=\"status-messages\">4</dd>"), "{html}");
    // The whole archive's size on disk against its raw mail (exact figures: web_api::scope).
    assert!(html.contains("<dd id=\"status-archive\">4 ("), "{html}");
    let ratio: f64 = html
        .split("<dd id=\"status-ratio\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no ratio: {html}"));
    assert!(ratio > 0.0, "{html}");
    assert!(html.contains("<dd id=\"last-verify\">intact"), "{html}");
    let trail = root.get("/audit?user=alice&action=search");
    assert_eq!(trail.status, 200);
    let html = trail.page();
    assert_safe_html(&trail.text(), Kind::Page, "audit");
    assert!(html.contains("<form id=\"audit-filter\""));
    assert!(html.contains("<table id=\"audit\""));
    assert!(
        html.contains("<td data-label=\"On what\">web invoice</td>"),
        "{html}"
    );
    assert!(
        !html.contains("<td data-label=\"Action\">login</td>"),
        "filtered by action"
    );
    // Paged: the filter survives into the next link.
    let many = root.get("/audit?since=2000-01-01").page();
    if many.matches("<tr><td data-label=\"#\">").count() == 100 {
        assert!(many.contains("<a rel=\"next\" href=\"/audit?since=2000-01-01&cursor="));
    }
    let bad = root.get("/audit?since=yesterday");
    assert_eq!(bad.status, 400);
    let users = root.get("/users");
    assert_eq!(users.status, 200);
    let html = users.page();
    assert!(html.contains("<table id=\"users\""));
    for name in ["alice", "carol", "pm", "root"] {
        assert!(
            html.contains(&format!("<td data-label=\"Name\">{name}</td>")),
            "{name}"
        );
    }
    assert!(html.contains("carol@other.net") && html.contains("all domains"));
    assert!(!html.contains("$argon2"), "never a hash");
    // Reading the trail is itself recorded.
    assert!(audit(&a.vault)
        .iter()
        .any(|e| e["actor"] == "root" && e["action"] == "audit-read"));
}
