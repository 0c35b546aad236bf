//! `search`: output formats, scope via `--as`, query errors, pagination, an index rebuilt
//! after deletion, and searching next to a process that holds the store.

use std::fs::File;

use crate::util::{fixtures, Vault};

/// The messages of fixtures/search (not its README, which `import` would skip as not mail).
fn search_fixtures() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(fixtures().join("search"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
}

fn vault_with_fixtures() -> Vault {
    let vault = Vault::new();
    let mut files = search_fixtures();
    files.push(fixtures().join("corpus/spamassassin/0001.eml"));
    files.push(fixtures().join("corpus/spamassassin/0002.eml"));
    vault.import(&files.iter().map(|f| f.as_path()).collect::<Vec<_>>());
    vault
}

/// `search --json ARGS` → (hits, summary from stderr).
fn search_json(vault: &Vault, args: &[&str]) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut all = vec!["search", "--json"];
    all.extend_from_slice(args);
    let out = vault.run(&all);
    assert!(
        out.status.success(),
        "search {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let summary =
        serde_json::from_str(stderr.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (hits, summary)
}

fn subjects(hits: &[serde_json::Value]) -> Vec<String> {
    hits.iter()
        .map(|h| h["subject"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn json_hits_carry_the_promised_fields() {
    let vault = vault_with_fixtures();
    let (hits, summary) = search_json(&vault, &["from:Mueller"]);
    assert_eq!(summary["total"], 2);
    assert_eq!(summary["next_cursor"], serde_json::Value::Null);
    // Both are dated 2024-03-31T23:30Z (import order, hence seq order, varies).
    let mut found = subjects(&hits);
    found.sort();
    assert_eq!(found, ["Grüße aus Zürich", "Rechnungen für März"]);
    let h = hits
        .iter()
        .find(|h| h["subject"] == "Rechnungen für März")
        .unwrap();
    for key in [
        "seq",
        "date",
        "from",
        "to",
        "subject",
        "size",
        "snippet",
        "deliveries",
    ] {
        assert!(h.get(key).is_some(), "{key} missing: {h}");
    }
    assert_eq!(h["date"], "2024-03-31T23:30:00Z");
    assert_eq!(h["from"], "Hans Müller <hans.mueller@example.de>");
    assert_eq!(h["to"][0], "Erika Mustermann <erika@example.com>");
    assert_eq!(
        h["size"].as_u64().unwrap(),
        std::fs::read(fixtures().join("search/de-rechnung.eml"))
            .unwrap()
            .len() as u64
    );
    // The seq is the record `show` returns.
    let seq = h["seq"].as_u64().unwrap().to_string();
    assert_eq!(
        vault.ok(&["show", &seq]),
        std::fs::read(fixtures().join("search/de-rechnung.eml")).unwrap()
    );
    // Text output: one line per hit, summary on stderr.
    let out = vault.run(&["search", "Gesamtbetrag"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("Rechnungen für März") && text.contains("[Gesamtbetrag]"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 1 hits"));
}

#[test]
fn as_limits_results_to_the_principal() {
    let vault = vault_with_fixtures();
    let (hits, _) = search_json(
        &vault,
        &["--as", "address:erika@example.com", "example OR exmh OR raid"],
    );
    assert_eq!(subjects(&hits).len(), 2, "{hits:?}");
    assert!(hits
        .iter()
        .all(|h| h["to"][0].as_str().unwrap().contains("erika@example.com")));
    let (hits, _) = search_json(&vault, &["--as", "address:nobody@example.com", "example"]);
    assert!(hits.is_empty());
    let (hits, _) = search_json(&vault, &["--as", "domain:linux.ie", "raid OR exmh OR rechnung"]);
    assert_eq!(subjects(&hits), ["[ILUG] Re: Problems with RAID1 on cobalt raq3"]);
    let out = vault.run(&["search", "--as", "alice", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected address:"));

    // A local user searches with their own scope, as over IMAP.
    vault.ok_in(
        &["user", "add", "erika", "--address", "erika@example.com"],
        Some(b"correct horse battery\n"),
    );
    let (as_user, _) = search_json(&vault, &["--as", "user:erika", "example OR exmh OR raid"]);
    let (as_address, _) = search_json(
        &vault,
        &["--as", "address:erika@example.com", "example OR exmh OR raid"],
    );
    assert_eq!(as_user, as_address);
    let out = vault.run(&["search", "--as", "user:nobody", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named"));
}

#[test]
fn a_bad_query_names_position_and_problem() {
    let vault = vault_with_fixtures();
    for (query, expected) in [
        (
            "from:x before:2024-13-01",
            "position 15: '2024-13-01' after 'before:' is not a valid date",
        ),
        (
            "(a OR b",
            "position 8: expected ')' to close the '(' at position 1",
        ),
        (
            "larger:big",
            "position 8: expected a size such as 10k or 5M after 'larger:'",
        ),
    ] {
        let out = vault.run(&["search", query]);
        assert_eq!(out.status.code(), Some(2), "{query}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{query}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

/// Issue #10: queries nested 10,000 parentheses, 25,000 NOTs or 100,000 '-' deep are refused
/// with a reason, not a stack overflow; so is one with too many terms.
#[test]
fn hostile_queries_are_refused_with_a_reason() {
    let vault = vault_with_fixtures();
    let parens = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
    let nots = format!("{}a", "NOT ".repeat(25_000));
    let minuses = format!("{}a", "-".repeat(100_000));
    let wide = "a ".repeat(1001);
    for (query, expected) in [
        (&parens, "nests deeper than 64 levels"),
        (&nots, "nests deeper than 64 levels"),
        (&minuses, "nests deeper than 64 levels"),
        (&wide, "more than 1000 terms"),
    ] {
        let out = vault.run(&["search", query]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn cursors_page_through_every_hit_once() {
    let vault = vault_with_fixtures();
    let (all, summary) = search_json(&vault, &["--limit", "100", "example OR exmh OR raid"]);
    let total = summary["total"].as_u64().unwrap();
    assert_eq!(all.len() as u64, total);
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["--limit", "2", "--sort", "oldest"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        args.push("example OR exmh OR raid");
        let (hits, summary) = search_json(&vault, &args);
        assert_eq!(summary["total"].as_u64(), Some(total));
        paged.extend(hits.iter().map(|h| h["seq"].as_u64().unwrap()));
        match summary["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut newest: Vec<u64> = all.iter().map(|h| h["seq"].as_u64().unwrap()).collect();
    newest.reverse();
    // Oldest first is newest first reversed (no two fixtures share date and seq).
    assert_eq!(paged, newest);
}

#[test]
fn a_deleted_index_is_rebuilt_and_a_locked_store_is_searched_read_only() {
    let vault = vault_with_fixtures();
    let before = vault.ok(&["search", "--json", "rechnung OR report OR exmh"]);
    std::fs::remove_dir_all(vault.dir.join("search")).unwrap();
    assert_eq!(
        vault.ok(&["search", "--json", "rechnung OR report OR exmh"]),
        before
    );
    vault.ok(&["reindex"]);
    assert_eq!(
        vault.ok(&["search", "--json", "rechnung OR report OR exmh"]),
        before
    );

    // Another process holds the store (as `serve` would): search reads the index anyway.
    let lock = File::options().write(true).open(vault.dir.join("LOCK")).unwrap();
    lock.try_lock().unwrap();
    assert_eq!(
        vault.ok(&["search", "--json", "rechnung OR report OR exmh"]),
        before
    );
    // Without an index and without the store, it says why instead of answering wrongly.
    std::fs::remove_dir_all(vault.dir.join("search")).unwrap();
    let out = vault.run(&["search", "rechnung"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("search index is not built yet"), "{stderr}");
    drop(lock);
    assert_eq!(
        vault.ok(&["search", "--json", "rechnung OR report OR exmh"]),
        before
    );
}

#[test]
fn import_leaves_the_search_index_to_the_next_open_which_catches_it_up() {
    let vault = Vault::new();
    let files: Vec<String> = search_fixtures()
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let mut args = vec!["import", "--create"];
    args.extend(files.iter().map(String::as_str));
    let out = vault.run(&args);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the search index is"), "{stderr}");
    let status = |vault: &Vault| -> serde_json::Value {
        serde_json::from_slice(&vault.ok(&["status", "--json"])).unwrap()
    };
    let imported = status(&vault);
    assert!(imported["search_indexed_seq"].as_u64().unwrap() < imported["records"].as_u64().unwrap());

    // The first search opens the store, which indexes the backlog before answering.
    let (_, summary) = search_json(&vault, &["from:Mueller"]);
    assert_eq!(summary["total"], 2);
    let searched = status(&vault);
    assert_eq!(searched["search_indexed_seq"], searched["records"]);
}
