//! The search page: query box, criteria form, results in scope, paging, sorting, errors.

use super::*;

#[test]
fn the_search_page_finds_what_the_viewer_may_see_and_builds_queries() {
    let a = scope_archive();
    let mut web = a.browser();
    web.login("alice");
    let invoice = a.seq("invoice.eml");

    let page = web.get("/search");
    let html = page.text();
    for part in [
        "id=\"q\"",
        "<details id=\"help\"",
        "<form id=\"criteria\"",
        "name=\"has_attachment\"",
        "name=\"min_size\"",
    ] {
        assert!(html.contains(part), "{part}");
    }
    assert_safe_html(&html, Kind::Page, "empty search page");

    // alice finds her invoice and the reply; carol's secret is neither listed nor counted.
    let found = web.get("/search?q=invoice");
    assert_eq!(found.status, 200);
    let html = found.text();
    assert!(html.contains("<p id=\"total\"><strong>2</strong>"), "{html}");
    assert!(html.contains(&format!("<tr class=\"hit\" data-seq=\"{invoice}\">")));
    assert!(html.contains(&format!(
        "<a class=\"open\" href=\"/messages/{invoice}\">quarterly invoice</a>"
    )));
    assert!(html.contains("<span class=\"att\""));
    assert!(html.contains("<mark>invoice</mark>"), "{html}");
    assert!(!html.contains("merger"), "{html}");
    for sort in ["date", "relevance", "size"] {
        assert!(
            html.contains(&format!("class=\"sort\" data-sort=\"{sort}\"")),
            "{sort}"
        );
    }
    assert_safe_html(&html, Kind::Page, "results");

    // Facets of the first page: her two senders' domains, never carol's; each a link that
    // narrows the search to exactly its count.
    assert!(html.contains("<nav id=\"facets\""), "{html}");
    assert!(!html.contains("other.net"), "{html}");
    let domain_link = html
        .split("<a class=\"facet\" href=\"")
        .skip(1)
        .find(|l| l.contains(">example.org</a>"))
        .and_then(|l| l.split('"').next())
        .expect("a facet link for example.org")
        .replace("&amp;", "&");
    assert!(domain_link.contains("fromdomain%3Aexample.org"), "{domain_link}");
    let narrowed = web.get(&domain_link).page();
    assert!(
        narrowed.contains("<p id=\"total\"><strong>1</strong>"),
        "{narrowed}"
    );
    assert!(narrowed.contains(&format!("data-seq=\"{invoice}\"")));
    // A later page does not count them again.
    let later = web.get("/search?q=invoice&limit=1&sort=date").page();
    let cursor = later
        .split("<a rel=\"next\" href=\"")
        .nth(1)
        .and_then(|l| l.split('"').next())
        .expect("a next page")
        .replace("&amp;", "&");
    assert!(!web.get(&cursor).page().contains("id=\"facets\""));

    // The criteria form writes the query, shows it and runs it.
    let built = web.get("/search?from=bob%40example.org&subject=quarterly+invoice&has_attachment=on&after=2024-12-01&min_size=10&limit=25");
    assert_eq!(built.status, 200, "{}", built.text());
    let html = built.page();
    let query =
        "from:bob@example.org subject:\"quarterly invoice\" after:2024-12-01 has:attachment larger:10";
    assert!(
        html.contains(&format!("<code id=\"built-query\">{query}</code>")),
        "{html}"
    );
    assert!(html.contains(&format!("id=\"q\" name=\"q\" type=\"search\" value=\"{query}\"")));
    assert!(html.contains("<p id=\"total\"><strong>1</strong>"));
    // A hostile value stays inside its field: no operator gets in, nothing is found.
    let hostile = web.get(&format!("/search?from={}", enc("x\" OR subject:\"merger")));
    let html = hostile.page();
    assert!(
        html.contains("<code id=\"built-query\">from:\"x OR subject: merger\"</code>"),
        "{html}"
    );
    assert!(html.contains("<p id=\"total\"><strong>0</strong>"));
    // A malformed date in the criteria: 400, said what is wrong.
    let bad_date = web.get("/search?after=yesterday");
    assert_eq!(bad_date.status, 400);
    assert!(bad_date.text().contains("id=\"criteria-error\""));

    // A bad query: 400 naming the position.
    let bad = web.get(&format!("/search?q={}", enc("from:alice (invoice")));
    assert_eq!(bad.status, 400);
    let html = bad.text();
    assert!(html.contains("id=\"query-error\""), "{html}");
    assert!(html.contains("position 20"), "{html}");
    assert!(bad
        .page()
        .contains("position 20: expected ')' to close the '(' at position 12"));

    // Paging: one per page, the next page by cursor, the same search in the URL.
    let first = web.get("/search?q=invoice&limit=1&sort=date").page();
    let next = first
        .split("<a rel=\"next\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a next link")
        .to_string();
    assert!(
        next.starts_with("/search?q=invoice&sort=date&limit=1&cursor="),
        "{next}"
    );
    let second = web.get(&next).text();
    assert!(second.contains(&format!("data-seq=\"{invoice}\"")), "{second}");
    assert!(!first.contains(&format!("data-seq=\"{invoice}\"")));
    assert!(!second.contains("rel=\"next\""));
    // Sorting by size puts the invoice (with its attachment) first.
    let by_size = web.get("/search?q=invoice&sort=size").text();
    let at_invoice = by_size.find(&format!("data-seq=\"{invoice}\"")).unwrap();
    let at_reply = by_size
        .find(&format!("data-seq=\"{}\"", a.seq("reply.eml")))
        .unwrap();
    assert!(at_invoice < at_reply);

    // Garbage cursors, absurd page sizes, long queries: a clear 400 page; the server goes on.
    for (path, says) in [
        ("/search?q=invoice&cursor=garbage".to_string(), "cursor"),
        (
            "/search?q=invoice&limit=99999999999999999999".to_string(),
            "limit",
        ),
        ("/search?q=invoice&sort=sideways".to_string(), "sort"),
        (format!("/search?q={}", "a".repeat(9 << 10)), "at most"),
        (format!("/search?q={}", "a".repeat(60 << 10)), "at most"),
    ] {
        let refused = web.get(&path);
        assert_eq!(refused.status, 400, "{}", &path[..path.len().min(80)]);
        assert!(refused.text().contains(says), "{says}: {}", refused.text());
    }
    assert_eq!(web.get("/search?q=invoice").status, 200);

    // A German page says the query's problem in German, with its position; the others too.
    web.extra.push(("accept-language".into(), "de".into()));
    let bad = web.get(&format!("/search?q={}", enc("from:alice (invoice")));
    assert_eq!(bad.status, 400);
    let html = bad.page();
    assert!(
        html.contains("Position 20: die '(' an Position 12 wird nicht mit ')' geschlossen"),
        "{html}"
    );
    let nothing = web.get(&format!("/search?q={}", enc("...")));
    assert_eq!(nothing.status, 400);
    assert!(
        nothing
            .page()
            .contains("Position 1: sie enthält keine durchsuchbaren Wörter"),
        "{}",
        nothing.page()
    );
    for (path, says) in [
        ("/search?q=invoice&cursor=garbage".to_string(), "Seitenmarke"),
        ("/search?q=invoice&limit=0".to_string(), "Seitengröße"),
        (format!("/search?q={}", "a".repeat(9 << 10)), "höchstens"),
        (format!("/search?q={}", "a".repeat(60 << 10)), "Die Adresse ist"),
    ] {
        let refused = web.get(&path);
        assert_eq!(refused.status, 400);
        assert!(refused.page().contains(says), "{says}: {}", refused.page());
    }
    web.extra.clear();

    // Every search page is a `search` audit record, as alice, from the web.
    let events = audit(&a.vault);
    assert!(events
        .iter()
        .any(|e| e["actor"] == "alice" && e["action"] == "search" && e["target"] == "web invoice"));
}
