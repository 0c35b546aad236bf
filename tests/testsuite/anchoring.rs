//! `[anchoring] hook`: the newest signed checkpoint goes to a command's stdin at start and
//! whenever a newer one exists; what it receives verifies as a pinned checkpoint; a failing
//! hook is logged and the archive goes on.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::intake::lmtp_send;
use crate::util::Vault;

fn config(dir: &Path, hook: &[&str]) -> std::path::PathBuf {
    let hook: Vec<String> = hook.iter().map(|a| format!("{a:?}")).collect();
    let path = dir.join("mailvault.toml");
    std::fs::write(
        &path,
        format!(
            "[anchoring]\nhook = [{}]\nhook_interval_secs = 1\nhook_timeout_secs = 10\n",
            hook.join(", ")
        ),
    )
    .unwrap();
    path
}

/// Checkpoint notes the hook wrote so far: (tree size, file).
fn received(dir: &Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut notes: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let text = std::fs::read_to_string(&path).ok()?;
            Some((text.lines().nth(1)?.parse().ok()?, path))
        })
        .collect();
    notes.sort();
    notes
}

#[test]
fn the_hook_receives_each_newer_checkpoint_and_it_verifies_as_pinned() {
    let vault = Vault::new();
    let work = tempfile::tempdir().unwrap();
    let inbox = work.path().join("received");
    std::fs::create_dir(&inbox).unwrap();
    let script = format!("cat > \"{}/$(date +%s%N).note\"", inbox.display());
    let config = config(work.path(), &["sh", "-c", &script]);
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let (seq, _) = lmtp_send(server.lmtp, b"Subject: anchored\r\n\r\nto be anchored\r\n").expect("delivered");
    let deadline = Instant::now() + Duration::from_secs(60);
    let covering = loop {
        if let Some((_, path)) = received(&inbox).into_iter().find(|(size, _)| *size >= seq) {
            break path;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covering seq {seq} reached the hook: {}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // At start too: an earlier checkpoint arrived before the delivery's.
    assert!(received(&inbox).len() >= 2, "{:?}", received(&inbox));
    assert_eq!(server.stop(), Some(0));
    // What left the machine pins the archive's history: verify checks the log against it.
    let (code, report) = vault.verify(&["--checkpoint", covering.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
}

#[test]
fn a_failing_hook_is_logged_and_the_archive_goes_on() {
    let vault = Vault::new();
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &["sh", "-c", "cat >/dev/null; exit 3"]);
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.log.lock().unwrap().contains("anchoring hook failed") {
        assert!(
            Instant::now() < deadline,
            "no failure logged: {}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        server.log.lock().unwrap().contains("exit status: 3"),
        "{}",
        server.log.lock().unwrap()
    );
    assert!(lmtp_send(server.lmtp, b"Subject: still here\r\n\r\nx\r\n").is_some());
    assert_eq!(server.stop(), Some(0));
}
