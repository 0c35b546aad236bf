//! What each caller may see through the API: their scope, and a plain 404 outside it.

use super::*;

#[test]
fn each_caller_sees_their_scope_and_a_message_outside_it_is_a_plain_404() {
    let a = archive(&[]);
    let (alice, pm, root) = (
        bearer(&token(&a.vault, "alice")),
        bearer(&token(&a.vault, "pm")),
        bearer(&token(&a.vault, "root")),
    );
    let web = &a.web;
    let mine = seq_of(web, &root, "subject:quarterly");
    let carols = seq_of(web, &root, "subject:merger");
    let big = seq_of(web, &root, "subject:big");

    // Search: alice finds her own invoice, nothing of carol's, and no count of it.
    let hits = web.get("/api/v1/search?q=invoice", &[("authorization", &alice)]);
    assert_eq!(hits.status, 200);
    let hits = hits.json();
    assert_eq!(hits["total"], 1, "{hits}");
    assert_eq!(hits["hits"][0]["seq"], mine);
    assert_eq!(hits["hits"][0]["has_attachment"], true);
    assert_eq!(hits["hits"][0]["from"][0], "Bob <bob@example.org>");
    assert!(hits["hits"][0]["snippet"].as_str().unwrap().contains("invoice"));
    let hidden = web
        .get("/api/v1/search?q=merger", &[("authorization", &alice)])
        .json();
    assert_eq!(hidden["total"], 0, "{hidden}");
    assert!(!hidden.to_string().contains("merger plan"));

    // Every read of carol's message is the 404 of a seq that does not exist, byte for byte.
    let missing = web.get("/api/v1/messages/999999", &[("authorization", &alice)]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not-found");
    for path in [
        format!("/api/v1/messages/{carols}"),
        format!("/api/v1/messages/{carols}/raw"),
        format!("/api/v1/messages/{carols}/attachments/1"),
        format!("/api/v1/messages/{carols}/proof"),
        // A seq that is an audit record, not a message.
        "/api/v1/messages/1".to_string(),
    ] {
        let refused = web.get(&path, &[("authorization", &alice)]);
        assert_eq!(refused.status, 404, "{path}");
        assert_eq!(refused.body, missing.body, "{path}");
        assert!(!refused.text().contains("merger"), "{path}");
    }
    // An auditor of example.com does not see other.net either; the whole-archive one does.
    let refused = web.get(&format!("/api/v1/messages/{carols}"), &[("authorization", &pm)]);
    assert_eq!((refused.status, &refused.body), (404, &missing.body));
    assert_eq!(
        web.get("/api/v1/search?q=merger", &[("authorization", &pm)])
            .json()["total"],
        0
    );
    assert_eq!(
        web.get("/api/v1/search?q=invoice", &[("authorization", &pm)])
            .json()["total"],
        1
    );
    let seen = web.get(&format!("/api/v1/messages/{carols}"), &[("authorization", &root)]);
    assert_eq!(seen.status, 200);
    assert_eq!(seen.json()["subject"], "secret merger plan");

    // Her own message: metadata with parts, the attachment as a download, the proof.
    let message = web.get(&format!("/api/v1/messages/{mine}"), &[("authorization", &alice)]);
    assert_eq!(message.status, 200);
    let message = message.json();
    assert_eq!(message["subject"], "quarterly invoice");
    let pdf = message["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["attachment"] == 1)
        .unwrap();
    assert_eq!(
        (pdf["name"].as_str(), pdf["content_type"].as_str()),
        (Some("r.pdf"), Some("application/pdf"))
    );
    let attachment = web.get(
        &format!("/api/v1/messages/{mine}/attachments/1"),
        &[("authorization", &alice)],
    );
    assert_eq!(attachment.status, 200);
    assert_eq!(attachment.body, b"%PDF-1");
    assert!(attachment
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment;"));
    assert_eq!(attachment.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(attachment.header("content-security-policy"), Some("sandbox"));
    let none = web.get(
        &format!("/api/v1/messages/{mine}/attachments/2"),
        &[("authorization", &alice)],
    );
    assert_eq!(none.status, 404);
    let proof = web.get(
        &format!("/api/v1/messages/{mine}/proof"),
        &[("authorization", &alice)],
    );
    assert_eq!(proof.status, 200, "{}", proof.text());
    let proof = proof.json();
    assert_eq!(proof["seq"], mine);
    let checkpoint = web.get("/api/v1/checkpoint", &[("authorization", &alice)]);
    assert_eq!(checkpoint.status, 200);
    assert!(checkpoint
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert!(proof["checkpoint"].as_str().unwrap().lines().count() >= 4);
    assert!(proof["tree_size"].as_u64().unwrap() >= mine);

    // Raw bytes, several MiB, exactly what `mailvault show` prints.
    let raw = web.get(
        &format!("/api/v1/messages/{big}/raw"),
        &[("authorization", &alice)],
    );
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), Some("message/rfc822"));
    assert!(raw.body.len() > 3 << 20);
    assert!(
        raw.body == a.vault.ok(&["show", &big.to_string()]),
        "raw differs from show"
    );

    // Status is for auditors, the trail for auditors of everything.
    assert_eq!(
        web.get("/api/v1/status", &[("authorization", &alice)]).status,
        403
    );
    let status = web.get("/api/v1/status", &[("authorization", &pm)]);
    assert_eq!(status.status, 200);
    let status = status.json();
    assert!(status["last_seq"].as_u64().unwrap() > big);
    // Sizes: the three distinct messages' raw bytes as `mailvault status` sums them from the
    // log; on disk at least the incompressible 3 MiB message; the ratio is on disk ÷ raw.
    let cli: Value = serde_json::from_slice(&a.vault.ok(&["status", "--json"])).unwrap();
    let n = |k: &str| status[k].as_u64().unwrap_or_else(|| panic!("{k}: {status}"));
    assert_eq!(n("messages"), 3, "{status}");
    assert_eq!(n("raw_bytes"), cli["message_bytes"].as_u64().unwrap(), "{status}");
    assert_eq!(n("on_disk_bytes"), n("log_bytes") + n("index_bytes"), "{status}");
    assert!(n("on_disk_bytes") > 3 << 20 && n("search_bytes") > 0, "{status}");
    let ratio = status["on_disk_ratio"].as_f64().unwrap();
    let expected = n("on_disk_bytes") as f64 / n("raw_bytes") as f64;
    assert!((ratio - expected).abs() < 1e-9, "{ratio} vs {expected}");
    assert!(
        n("checkpoint_seq") > 0 && status.get("last_verify").is_none(),
        "{status}"
    );
    let doc = web.get("/api/v1/openapi.json", &[]).json();
    for field in ["raw_bytes", "on_disk_bytes", "on_disk_ratio", "last_verify"] {
        assert!(
            doc["components"]["schemas"]["Status"]["properties"][field].is_object(),
            "{field}"
        );
    }
    assert_eq!(web.get("/api/v1/audit", &[("authorization", &pm)]).status, 403);
    let trail = web.get(
        "/api/v1/audit?action=search&user=alice&limit=1",
        &[("authorization", &root)],
    );
    assert_eq!(trail.status, 200, "{}", trail.text());
    let trail = trail.json();
    assert_eq!(trail["events"].as_array().unwrap().len(), 1);
    assert_eq!(trail["events"][0]["target"], "web invoice");
    let cursor = trail["next_cursor"].as_str().unwrap();
    let next = web
        .get(
            &format!("/api/v1/audit?action=search&user=alice&limit=1&cursor={cursor}"),
            &[("authorization", &root)],
        )
        .json();
    assert_eq!(next["events"][0]["target"], "web merger");

    // Every search, view and download is in the trail, as alice, from the web.
    let events = audit(&a.vault);
    let by = |action: &str, target: &str| {
        events
            .iter()
            .any(|e| e["actor"] == "alice" && e["action"] == action && e["target"] == target)
    };
    assert!(by("search", "web invoice"), "{events:#?}");
    assert!(by("view", &format!("web seq {mine}")));
    assert!(by("raw", &format!("web seq {big}")));
    assert!(by("download", &format!("web seq {mine} attachment 1")));
    assert!(events.iter().any(|e| e["action"] == "proof"
        && e["target"]
            .as_str()
            .unwrap()
            .starts_with(&format!("web seq {mine} checkpoint "))));
    assert!(events.iter().any(|e| e["action"] == "login"
        && e["actor"] == "alice"
        && e["target"].as_str().unwrap().starts_with("web via=token id=")));
    // Refused reads leave no view of carol's message.
    assert!(!by("view", &format!("web seq {carols}")));
    drop(a.server);
}
