//! Hostile mail in the browser (fixtures/xss/): nothing executes, nothing leaves.

use std::path::PathBuf;

use super::{run_flow, site, PASSWORD};
use crate::util::fixtures;

/// Every `fixtures/xss/*.eml`, by file name.
fn xss_mails() -> Vec<(String, Vec<u8>)> {
    let dir = fixtures().join("xss");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// The addresses in a mail's `To:` header (unfolded), lower-case.
fn to_addresses(mail: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(mail);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .split("\n\n")
        .next()
        .unwrap_or_default();
    let mut to = String::new();
    let mut in_to = false;
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if in_to {
                to.push_str(line);
            }
            continue;
        }
        in_to = line.to_ascii_lowercase().starts_with("to:");
        if in_to {
            to.push_str(&line[3..]);
        }
    }
    to.split([',', ' ', '<', '>', '"'])
        .filter(|w| w.contains('@'))
        .map(|w| w.trim().to_ascii_lowercase())
        .collect()
}

/// The seqs `user` finds with `q` through the JSON API (the page must list the same).
fn api_seqs(base_url: &str, user: &str, q: &str) -> Vec<u64> {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{PASSWORD}"));
    let mut response = ureq::get(format!("{base_url}/api/v1/search"))
        .query("q", q)
        .query("limit", "500")
        .header("authorization", format!("Basic {auth}"))
        .call()
        .unwrap();
    let page: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    page["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["seq"].as_u64().unwrap())
        .collect()
}

/// Every XSS fixture, as the auditor of all domains and as alice, whom they are addressed to:
/// the results listing them, each message page with its HTML
/// frame, attachments, thread and text links, the `/out` page of each link and of `javascript:`
/// and `data:` URLs. No script runs in any frame (the flow proves first that its hook would
/// see one, and that a frame sandboxed without `allow-scripts` runs none), no request leaves
/// for another host, the frame has no `allow-same-origin`, the HTML part carries the CSP.
#[test]
fn xss_fixtures_run_nothing() {
    let mails = xss_mails();
    let to_alice: Vec<&str> = mails
        .iter()
        .filter(|(_, bytes)| to_addresses(bytes).iter().any(|a| a == "alice@example.com"))
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        !to_alice.is_empty(),
        "fixtures/xss/README.md: they are addressed to alice@example.com"
    );
    let site = site(&mails);
    let everything = "-zzzznothinglikethis";
    for (user, flow) in [("root", "xss-auditor"), ("alice", "xss-user")] {
        let mut seqs = api_seqs(&site.base_url, user, everything);
        seqs.sort_unstable();
        let mut expected: Vec<u64> = match user {
            "root" => site.seqs.values().copied().collect(),
            _ => to_alice.iter().map(|name| site.seq(name)).collect(),
        };
        expected.sort_unstable();
        assert_eq!(seqs, expected, "{user} finds the fixtures addressed to them");
        let mut env = site.as_user(user);
        env.extend([
            ("FLOW_NAME", flow.to_string()),
            ("QUERY", everything.to_string()),
            (
                "SEQS",
                seqs.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
            ),
        ]);
        let result = run_flow("xss", &site.base_url, &env);
        let mut required: Vec<String> = [
            "hook_sees_top_page_script",
            "hook_sees_allow_scripts_frame",
            "sandbox_without_allow_scripts_runs_nothing",
            "results_list_every_fixture",
            "nothing_executed",
            "no_outside_request",
        ]
        .iter()
        .map(|c| format!("{flow}.{c}"))
        .collect();
        for seq in &seqs {
            required.push(format!("{flow}.message_status {seq}"));
            required.push(format!("{flow}.no_script_or_remote_urls {seq}"));
            required.push(format!("{flow}.text_links_through_out {seq}"));
        }
        required.push(format!("{flow}.out_shows_target /out?url=javascript%3Aalert(1)"));
        let required: Vec<&str> = required.iter().map(String::as_str).collect();
        result.require(&required);
        let frames = result.checks.iter().filter(|c| c.contains(".html_csp ")).count();
        assert!(
            frames > 0,
            "{flow}: no fixture had an HTML part: {:?}",
            result.checks
        );
    }
}
