//! Every page of every fixture in `fixtures/xss/`, checked at the HTML level: nothing the
//! mail carries becomes markup that runs, loads or sends (the browser tests run the same
//! fixtures in Chromium).

use super::*;

/// The paths a page links to that start with `prefix` (attribute values, unescaped).
fn links(html: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for quote in ["href=\"", "src=\""] {
        for piece in html.split(quote).skip(1) {
            let value = unescape(piece.split('"').next().unwrap_or_default());
            if value.starts_with(prefix) && !out.contains(&value) {
                out.push(value);
            }
        }
    }
    out
}

#[test]
fn hostile_mail_never_becomes_active_markup() {
    let a = archive(&[], true);
    let mut web = a.browser();
    web.login("alice");
    let mut fixtures: Vec<(&String, &u64)> = a.seqs.iter().collect();
    fixtures.sort();
    assert!(fixtures.len() >= 13, "{fixtures:?}");
    let (mut framed, mut blocked, mut attachments, mut outs) = (0, 0, 0, 0);
    for (name, seq) in fixtures {
        let page = web.get(&format!("/messages/{seq}"));
        assert_eq!(page.status, 200, "{name}: {}", page.text());
        let html = page.text();
        assert_safe_html(&html, Kind::Page, &format!("{name}: message page"));
        blocked += usize::from(html.contains("id=\"remote-images-note\""));
        if html.contains("id=\"html-body\"") {
            framed += 1;
            let body = web.get(&format!("/messages/{seq}/html"));
            assert_eq!(body.status, 200, "{name}");
            assert_eq!(
                body.header("content-security-policy"),
                Some("default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox"),
                "{name}"
            );
            assert_eq!(body.header("x-content-type-options"), Some("nosniff"), "{name}");
            assert_eq!(body.header("referrer-policy"), Some("no-referrer"), "{name}");
            let doc = body.text();
            assert_safe_html(&doc, Kind::SandboxedBody, &format!("{name}: sandboxed body"));
            for out in links(&doc, "/out?") {
                outs += 1;
                let shown = web.get(&out);
                assert_eq!(shown.status, 200, "{name}: {out}");
                assert_safe_html(&shown.text(), Kind::Page, &format!("{name}: {out}"));
            }
        }
        for out in links(&html, "/out?") {
            outs += 1;
            let shown = web.get(&out);
            assert_eq!(shown.status, 200, "{name}: {out}");
            assert_safe_html(&shown.text(), Kind::Page, &format!("{name}: {out}"));
        }
        for path in links(&html, &format!("/messages/{seq}/attachments/")) {
            attachments += 1;
            let file = web.get(&path);
            assert_eq!(file.status, 200, "{name}: {path}");
            let disposition = file.header("content-disposition").unwrap_or_default();
            assert!(
                disposition.starts_with("attachment; filename=\""),
                "{name}: {disposition}"
            );
            assert!(
                disposition.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
                "{name}: {disposition:?}"
            );
            let ascii_name = disposition.split('"').nth(1).unwrap_or_default();
            assert!(
                !ascii_name.contains(['<', '>', '\\', '/']),
                "{name}: {disposition}"
            );
            assert_eq!(file.header("x-content-type-options"), Some("nosniff"), "{name}");
            assert_eq!(file.header("content-security-policy"), Some("sandbox"), "{name}");
        }
        let raw = web.get(&format!("/messages/{seq}/raw"));
        assert_eq!(raw.header("content-security-policy"), Some("sandbox"));
        assert!(
            raw.body == a.vault.ok(&["show", &seq.to_string()]),
            "{name}: raw differs"
        );
    }
    // The fixtures did reach every wall: frames, blocked images, attachments, links.
    assert!(framed >= 9, "{framed}");
    assert!(blocked >= 3, "{blocked}");
    assert!(attachments >= 5, "{attachments}");
    assert!(outs >= 3, "{outs}");

    // Hostile subjects, names and snippets in the results, and in the thread links.
    for q in ["xss", "window", "script", "subject:xss", "onerror", "javascript"] {
        let found = web.get(&format!("/search?q={}", enc(q)));
        assert_eq!(found.status, 200, "{q}");
        assert_safe_html(&found.text(), Kind::Page, &format!("search {q}"));
    }
    let headers = web.get(&format!("/messages/{}", a.seq("headers.eml"))).page();
    assert!(
        headers.contains("<h1><script>window.__xss=1</script>"),
        "the subject is shown as text: {headers}"
    );
}
