//! The admin listener (docs/OPERATIONS.md §Metrics and health): `/metrics` counts what really
//! happened over SMTP and IMAP and parses with Prometheus's own `promtool`; `/healthz` is 200
//! while the process answers; `/readyz` is 200 when the store can take mail and 503, with the
//! reason, when it cannot (free space below the reserve; fsyncs of the log failing); the
//! listener is on loopback unless configured otherwise; and the sample alert rules of
//! docs/alerts.yml are valid rules over these metrics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::lossyfs::{Rng, StoreDisk, Tear};
use crate::util::{python_json, Vault};

const PASSWORD: &[u8] = b"correct horse battery\n";

/// `GET path` over HTTP/1.1; the status code and the body.
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the admin listener");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head}"));
    if path == "/metrics" {
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
    }
    (status, body.to_string())
}

/// The value of the series `series` (name and labels exactly as exposed), if exposed.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

fn must(metrics: &str, series: &str) -> f64 {
    value(metrics, series).unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}

/// `promtool ARGS…` with `stdin`; panics with its output unless it succeeds. Without promtool
/// (apt package `prometheus`; .ci/run installs it) the check is skipped, saying so.
fn promtool(args: &[&str], stdin: &[u8]) {
    let child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED: promtool {args:?}: promtool is not installed (apt package prometheus; .ci/run installs it)"
            );
            return;
        }
        Err(e) => panic!("promtool: {e}"),
    };
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two messages archived over SMTP (one session), one refused as too large (another), a
/// failed IMAP login, a line that is no IMAP command.
const TRAFFIC: &str = r#"
import imaplib, json, smtplib, socket, ssl, sys
smtp_port, imaps_port = int(sys.argv[1]), int(sys.argv[2])
sizes = []
with smtplib.SMTP("127.0.0.1", smtp_port) as s:
    for i in range(2):
        raw = ("From: max@example.org\r\nTo: erika@example.com\r\nSubject: m%d\r\n\r\nbody %d\r\n" % (i, i)).encode()
        s.sendmail("max@example.org", ["erika@example.com"], raw)
        sizes.append(len(raw))
with smtplib.SMTP("127.0.0.1", smtp_port) as s:
    s.ehlo()
    s.mail("max@example.org")
    s.rcpt("erika@example.com")
    code, _ = s.data(b"Subject: big\r\n\r\n" + b"x" * 5000 + b"\r\n")
print(json.dumps(dict(step="smtp", sizes=sizes, big=code)), flush=True)

tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=tls)
try:
    m.login("erika", "wrong password")
    failed = False
except imaplib.IMAP4.error:
    failed = True
m.logout()
raw = tls.wrap_socket(socket.create_connection(("127.0.0.1", imaps_port)))
f = raw.makefile("rb")
f.readline()
raw.sendall(b"a1 XYZZY\r\n")
bad = f.readline().decode()
raw.sendall(b"a2 LOGOUT\r\n")
f.read()
print(json.dumps(dict(step="imap", failed=failed, bad=bad)), flush=True)
"#;

#[test]
fn metrics_count_what_happened_and_promtool_parses_them() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    vault.ok_in(
        &["user", "add", "erika", "--address", "erika@example.com"],
        Some(PASSWORD),
    );
    let config = vault.dir.with_file_name("mailvault.toml");
    std::fs::write(&config, "[intake]\nmax_message_size = 4096\n").unwrap();
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let admin = server.admin.expect("the admin listener is on");
    assert!(admin.ip().is_loopback());
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".into()));
    let (status, before) = get(admin, "/metrics");
    assert_eq!(status, 200);
    // Series that are counted from zero exist before the first event.
    for series in [
        "mailvault_intake_messages_total{protocol=\"smtp\",result=\"accepted\"}",
        "mailvault_intake_messages_total{protocol=\"lmtp\",result=\"temporary\"}",
        "mailvault_login_failures_total{door=\"imap\",reason=\"failed\"}",
        "mailvault_imap_commands_total{command=\"fetch\"}",
    ] {
        assert_eq!(must(&before, series), 0.0, "{series}");
    }
    assert_eq!(
        value(&before, "mailvault_verify_last_success"),
        None,
        "no verify ran yet"
    );

    let steps = python_json(
        TRAFFIC,
        &[server.smtp.port().to_string(), server.imaps.port().to_string()],
    );
    assert_eq!(steps[0]["big"], 552, "{steps:?}");
    assert_eq!(steps[1]["failed"], true, "{steps:?}");
    assert!(
        steps[1]["bad"].as_str().unwrap().starts_with("a1 BAD"),
        "{steps:?}"
    );
    let bytes: u64 = steps[0]["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .sum();

    let (_, m) = get(admin, "/metrics");
    let smtp = |result: &str| {
        must(
            &m,
            &format!("mailvault_intake_messages_total{{protocol=\"smtp\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(smtp("accepted"), 2.0);
    assert_eq!(smtp("permanent"), 1.0, "the 552");
    assert_eq!(smtp("temporary"), 0.0);
    assert_eq!(
        must(&m, "mailvault_intake_bytes_total{protocol=\"smtp\"}"),
        bytes as f64
    );
    assert_eq!(
        must(&m, "mailvault_intake_sessions_total{protocol=\"smtp\"}"),
        2.0
    );
    assert_eq!(must(&m, "mailvault_intake_ack_seconds_count"), 2.0);
    assert_eq!(must(&m, "mailvault_intake_ack_seconds_bucket{le=\"+Inf\"}"), 2.0);
    assert_eq!(
        must(
            &m,
            "mailvault_login_failures_total{door=\"imap\",reason=\"failed\"}"
        ),
        1.0
    );
    assert_eq!(must(&m, "mailvault_imap_commands_total{command=\"login\"}"), 1.0);
    assert_eq!(
        must(&m, "mailvault_imap_commands_total{command=\"other\"}"),
        1.0,
        "XYZZY"
    );
    assert!(must(&m, "mailvault_imap_commands_total{command=\"logout\"}") >= 2.0);
    // Each acknowledgement (two messages, the failed login's audit record) waited for an
    // fsync; concurrent ones may share one.
    let fsyncs = must(&m, "mailvault_store_fsyncs_total");
    assert!(fsyncs >= 1.0, "{m}");
    assert_eq!(must(&m, "mailvault_store_fsync_seconds_count"), fsyncs);
    assert_eq!(must(&m, "mailvault_store_commit_records_count"), fsyncs);
    assert!(must(&m, "mailvault_store_commit_records_sum") >= 3.0, "{m}");
    assert!(must(&m, "mailvault_store_last_seq") >= 3.0);
    assert_eq!(must(&m, "mailvault_checkpoint_unsigned_records"), 0.0);
    assert!(must(&m, "mailvault_checkpoint_age_seconds") >= 0.0);
    assert!(must(&m, "mailvault_search_index_lag_records") >= 0.0);
    assert!(must(&m, "mailvault_search_index_lag_seconds") >= 0.0);
    assert!(must(&m, "mailvault_disk_free_bytes") > 0.0);
    assert!(value(&m, "mailvault_imap_sessions{state=\"authenticated\"}").is_some());
    assert_eq!(must(&m, "mailvault_ready"), 1.0);
    // Every family has its HELP and TYPE, and the whole parses.
    for family in m.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        assert!(m.contains(&format!("# HELP {name} ")), "no HELP for {name}");
    }
    promtool(&["check", "metrics"], m.as_bytes());

    // `mailvault verify` leaves its outcome for the server to report.
    let (code, out) = vault.verify(&[]);
    assert_eq!(code, 0, "{out}");
    let (_, m) = get(admin, "/metrics");
    assert_eq!(must(&m, "mailvault_verify_last_success"), 1.0);
    assert!(must(&m, "mailvault_verify_last_records") >= 3.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ran = must(&m, "mailvault_verify_last_run_timestamp_seconds");
    assert!(ran > now - 3600.0 && ran <= now + 1.0, "{ran}");
    promtool(&["check", "metrics"], m.as_bytes());
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn readyz_is_503_below_the_disk_reserve_and_healthz_stays_200() {
    let vault = Vault::new();
    let config = vault.dir.with_file_name("mailvault.toml");
    // More than any disk has: a real statvfs of the data directory says it is below.
    std::fs::write(&config, "[admin]\ndisk_reserve_mib = 1099511627776\n").unwrap();
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let admin = server.admin.unwrap();
    // The admin listener answers a moment before the server has marked itself running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (status, body) = loop {
        let (status, body) = get(admin, "/readyz");
        if !body.contains("starting") || std::time::Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: disk: ") && body.contains("below the reserve of 1099511627776 MiB"),
        "{body}"
    );
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".into()));
    let (_, m) = get(admin, "/metrics");
    assert_eq!(must(&m, "mailvault_ready"), 0.0);
    assert!(must(&m, "mailvault_disk_free_bytes") < must(&m, "mailvault_disk_reserve_bytes"));
    assert_eq!(server.stop(), Some(0));
}

/// Every fsync of the log fails (lossyfs): the delivery gets 451, counted as a temporary
/// refusal, and the server says it is not ready until an fsync succeeds again.
#[test]
fn readyz_is_503_while_fsyncs_of_the_log_fail() {
    let on = StoreDisk::new("mailvault-metrics");
    let vault = &on.vault;
    let mounted = on.mount();
    let server = vault.serve(&[]);
    let admin = server.admin.unwrap();
    let message = |n: u32| format!("Subject: m{n}\r\n\r\nbody {n}\r\n").into_bytes();
    assert!(
        crate::intake::lmtp_send(server.lmtp, &message(1)).is_some(),
        "250"
    );
    assert_eq!(get(admin, "/readyz").0, 200);
    mounted.lose_fsyncs(Path::new("data/log/00000000000000000001.seg"), 1_000_000);
    assert!(
        crate::intake::lmtp_send(server.lmtp, &message(2)).is_none(),
        "451"
    );
    let (status, body) = get(admin, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: store: ") && body.contains("fsync"),
        "{body}"
    );
    let (_, m) = get(admin, "/metrics");
    assert_eq!(
        must(
            &m,
            "mailvault_intake_messages_total{protocol=\"lmtp\",result=\"temporary\"}"
        ),
        1.0
    );
    assert_eq!(
        must(
            &m,
            "mailvault_intake_messages_total{protocol=\"lmtp\",result=\"accepted\"}"
        ),
        1.0
    );
    assert_eq!(must(&m, "mailvault_ready"), 0.0);
    mounted.cut(Tear::DropAll, &mut Rng::new(1));
    server.kill9();
    mounted.unmount();
}

/// Without `--admin` or `[admin] listen`, the listener is 127.0.0.1:9425: the server either
/// listens there or, if something else has the port, refuses to start naming it.
#[test]
fn the_admin_listener_is_on_loopback_by_default() {
    let vault = Vault::new();
    let stopped = crate::util::serve_until_logged(
        Command::new(env!("CARGO_BIN_EXE_mailvault"))
            .arg("--data")
            .arg(&vault.dir)
            .args([
                "serve",
                "--create",
                "--lmtp",
                "127.0.0.1:0",
                "--smtp",
                "none",
                "--imap",
                "none",
                "--imaps",
                "none",
                "--web",
                "none",
            ]),
        "listening protocol=admin addr=",
    );
    let (log, status) = (stopped.log, stopped.status);
    let admin = stopped.marker_line.and_then(|l| {
        l.split("listening protocol=admin addr=")
            .nth(1)
            .map(|a| a.trim().to_string())
    });
    match admin {
        Some(addr) => {
            assert_eq!(addr, "127.0.0.1:9425", "{log}");
            assert!(status.success(), "{log}");
        }
        None => assert!(
            log.contains("admin.listen: cannot listen on 127.0.0.1:9425"),
            "{log}"
        ),
    }
}

/// The sample alert rules of docs/OPERATIONS.md are valid Prometheus rules.
#[test]
fn the_sample_alert_rules_are_valid() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/alerts.yml");
    let text = std::fs::read_to_string(&rules).unwrap();
    for metric in [
        "mailvault_search_index_lag_seconds",
        "mailvault_checkpoint_age_seconds",
        "mailvault_disk_free_bytes",
        "mailvault_intake_messages_total",
    ] {
        assert!(text.contains(metric), "docs/alerts.yml uses {metric}");
    }
    promtool(&["check", "rules", rules.to_str().unwrap()], b"");
}
