//! `facets=1` on `/api/v1/search`: counts by year, month and sender domain over every page,
//! only of the caller's mail, each value's `query` finding exactly its `count`.

use super::*;

/// `q` for a URL: every byte but letters and digits percent-encoded.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn mail(from: &str, to: &str, date: &str, n: usize) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nDate: {date}\r\nSubject: invoice {n}\r\nMessage-ID: <f{n}@test>\r\n\r\n\
         the invoice number {n}\r\n"
    )
    .into_bytes()
}

/// Alice: three from example.org (one written upper-case), one from shop.example, over three
/// months of two years; carol: two from secret.test, which only she and auditors may count.
fn facet_archive() -> (Vault, Server, Web, tempfile::TempDir) {
    let vault = Vault::new();
    vault.ok(&["init"]);
    add_users(&vault);
    let mail_dir = tempfile::tempdir().unwrap();
    let messages = [
        (
            "Bob <bob@example.org>",
            "alice@example.com",
            "Tue, 05 Mar 2024 10:00:00 +0000",
        ),
        (
            "bob@example.org",
            "alice@example.com",
            "Tue, 12 Mar 2024 10:00:00 +0000",
        ),
        (
            "X <X@Example.ORG>",
            "alice@example.com",
            "Mon, 01 Apr 2024 01:30:00 +0200",
        ),
        (
            "dan@shop.example",
            "alice@example.com",
            "Thu, 30 Nov 2023 23:00:00 -0200",
        ),
        (
            "spy@secret.test",
            "carol@other.net",
            "Tue, 05 Mar 2024 11:00:00 +0000",
        ),
        (
            "spy@secret.test",
            "carol@other.net",
            "Sat, 09 Mar 2024 11:00:00 +0000",
        ),
    ];
    let files: Vec<PathBuf> = messages
        .iter()
        .enumerate()
        .map(|(n, (from, to, date))| {
            let path = mail_dir.path().join(format!("{n}.eml"));
            std::fs::write(&path, mail(from, to, date, n)).unwrap();
            path
        })
        .collect();
    let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    assert_eq!(vault.import(&paths).len(), messages.len());
    let server = vault.serve(&[]);
    let web = Web::http(server.web.expect("web listener"));
    (vault, server, web, mail_dir)
}

fn search(web: &Web, who: &str, q: &str, extra: &str) -> Value {
    let path = format!("/api/v1/search?q={}{extra}", encode(q));
    let answer = web.get(&path, &[("authorization", who)]);
    assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    answer.json()
}

/// `(value, count)` of a facet list.
fn pairs(list: &Value) -> Vec<(String, u64)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["value"].as_str().unwrap().to_string(),
                b["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn owned(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(v, n)| (v.to_string(), *n)).collect()
}

/// Every value's `query`, searched, has that value's `count` as its total.
fn check_queries(web: &Web, who: &str, facets: &Value) {
    for list in ["years", "months", "sender_domains"] {
        for bucket in facets[list].as_array().unwrap() {
            let q = bucket["query"].as_str().expect("a query per value");
            let narrowed = search(web, who, q, "");
            assert_eq!(narrowed["total"], bucket["count"], "{list} {bucket}: {q}");
        }
    }
}

#[test]
fn facets_count_the_callers_mail_and_each_value_narrows_to_its_count() {
    let (vault, _server, web, _mail) = facet_archive();
    let alice = bearer(&token(&vault, "alice"));
    let root = bearer(&token(&vault, "root"));

    // Not asked for: not computed, not in the answer.
    let plain = search(&web, &alice, "invoice", "");
    assert_eq!(plain["total"], 4);
    assert_eq!(
        plain["total_exact"], true,
        "below the count limit a total is exact"
    );
    assert!(plain.get("facets").is_none(), "{plain}");
    let counted = search(&web, &alice, "invoice", "&exact_total=1&limit=1");
    assert_eq!(
        (&counted["total"], &counted["total_exact"]),
        (&4.into(), &true.into())
    );
    let refused = web.get(
        "/api/v1/search?q=invoice&exact_total=maybe",
        &[("authorization", &alice)],
    );
    assert_eq!(refused.status, 400, "{}", refused.text());

    // One hit per page, yet the facets count all four of alice's messages.
    let page = search(&web, &alice, "invoice", "&facets=1&limit=1");
    assert_eq!(page["hits"].as_array().unwrap().len(), 1);
    let facets = &page["facets"];
    assert_eq!(facets["exact"], true);
    assert_eq!(pairs(&facets["years"]), owned(&[("2024", 3), ("2023", 1)]));
    // 01:30 at +02:00 on 1 April is March in UTC; 23:00 at -02:00 on 30 November is December.
    assert_eq!(pairs(&facets["months"]), owned(&[("2024-03", 3), ("2023-12", 1)]));
    assert_eq!(
        pairs(&facets["sender_domains"]),
        owned(&[("example.org", 3), ("shop.example", 1)])
    );
    assert_eq!(facets["other_sender_domains"], 0);
    assert_eq!(
        facets["sender_domains"][0]["query"],
        "invoice fromdomain:example.org"
    );
    assert_eq!(
        facets["months"][0]["query"],
        "invoice after:2024-02-29 before:2024-04-01"
    );
    check_queries(&web, &alice, facets);
    // A later page's facets are the first page's.
    let cursor = page["next_cursor"].as_str().unwrap();
    let later = search(
        &web,
        &alice,
        "invoice",
        &format!("&facets=1&limit=1&cursor={cursor}"),
    );
    assert_eq!(&later["facets"], facets);

    // secret.test is counted for the whole-archive auditor, and never for alice, even asked.
    let everything = search(&web, &root, "invoice", "&facets=true");
    assert_eq!(everything["total"], 6);
    assert_eq!(
        pairs(&everything["facets"]["sender_domains"]),
        owned(&[("example.org", 3), ("secret.test", 2), ("shop.example", 1)])
    );
    assert_eq!(
        pairs(&everything["facets"]["months"])[0],
        ("2024-03".to_string(), 5)
    );
    check_queries(&web, &root, &everything["facets"]);
    let hers = search(&web, &alice, "fromdomain:secret.test OR invoice", "&facets=1");
    assert_eq!(hers["total"], 4);
    assert!(!hers.to_string().contains("secret.test\","), "{hers}");
    assert!(pairs(&hers["facets"]["sender_domains"])
        .iter()
        .all(|(d, _)| d != "secret.test"));
    // An OR query's narrowing keeps it whole.
    assert_eq!(
        hers["facets"]["sender_domains"][1]["query"],
        "(fromdomain:secret.test OR invoice) fromdomain:shop.example"
    );
    check_queries(&web, &alice, &hers["facets"]);

    // A bad value is a 400; the OpenAPI document describes the facets.
    let bad = web.get(
        "/api/v1/search?q=invoice&facets=yes",
        &[("authorization", &alice)],
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    let doc = web.get("/api/v1/openapi.json", &[]).json();
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["FacetsJson"]["properties"]["sender_domains"].is_object(),
        "{schemas}"
    );
    assert!(
        schemas["FacetValue"]["properties"]["query"].is_object(),
        "{schemas}"
    );
}
