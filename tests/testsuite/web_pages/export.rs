//! `POST /export` from the search page: an evidence bundle of the viewer's own scope that
//! `verify-bundle` accepts offline, recorded with its SHA-256; refused without the session's
//! CSRF token, cross-site, or without a session.

use sha2::{Digest, Sha256};

use super::*;
use crate::export::entry;

/// The `message_count` and messages of a bundle's manifest.
fn manifest(bundle: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&entry(bundle, "bundle.json")).expect("bundle.json")
}

#[test]
fn the_search_page_exports_a_verifiable_bundle_of_the_viewers_scope() {
    let a = scope_archive();
    let dir = tempfile::tempdir().unwrap();
    let mut alice = a.browser();
    let token = alice.login("alice");
    let page = alice.get("/search?q=invoice").text();
    assert!(page.contains("<form id=\"export\""), "{page}");

    // Refused: a forged token, a cross-site post (both 403); nothing is recorded.
    let forged = alice.post("/export", &[("csrf", "forged"), ("q", "invoice")], &[]);
    assert_eq!(forged.status, 403, "{}", forged.text());
    let cross = alice.post(
        "/export",
        &[("csrf", &token), ("q", "invoice")],
        &[("sec-fetch-site", "cross-site")],
    );
    assert_eq!(cross.status, 403, "{}", cross.text());
    let bad = alice.post("/export", &[("csrf", &token), ("q", "before:")], &[]);
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.page().contains("position 8"), "{}", bad.page());
    // Without a session: to the login form.
    let mut stranger = a.browser();
    let away = stranger.post("/export", &[("csrf", &token), ("q", "invoice")], &[]);
    assert_eq!((away.status, away.header("location")), (303, Some("/login")));
    assert!(!audit(&a.vault).iter().any(|e| e["action"] == "export"));

    // Alice's export holds her invoice and her reply, never carol's secret that also says
    // "invoice"; root's holds all three. Both verify offline.
    let mut root = a.browser();
    let root_token = root.login("root");
    for (browser, csrf, who, expected) in [
        (&mut alice, &token, "alice", 2),
        (&mut root, &root_token, "root", 3),
    ] {
        let got = browser.post("/export", &[("csrf", csrf), ("q", "invoice")], &[]);
        assert_eq!(got.status, 200, "{who}: {}", got.text());
        assert_eq!(got.header("content-type"), Some("application/zip"));
        assert!(got
            .header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment;")));
        assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
        let path = dir.path().join(format!("{who}.zip"));
        std::fs::write(&path, &got.body).unwrap();
        let m = manifest(&path);
        assert_eq!(m["message_count"], expected, "{who}: {m}");
        let verified = crate::export::verify_bundle_here(&path);
        assert!(
            verified.status.success(),
            "{who}: {}",
            crate::export::text(&verified)
        );
        let sha = Sha256::digest(&got.body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let recorded = audit(&a.vault);
        assert!(
            recorded.iter().any(|e| e["action"] == "export"
                && e["actor"] == who
                && e["target"].as_str().is_some_and(|t| t.contains(&sha))),
            "{who}: no export record with the bundle's SHA-256 {sha}: {recorded:?}"
        );
    }
    assert!(!std::fs::read(dir.path().join("alice.zip"))
        .unwrap()
        .windows(b"secret merger plan".len())
        .any(|w| w == b"secret merger plan"));
}
