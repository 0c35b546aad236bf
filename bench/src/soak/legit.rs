//! The legitimate load: IMAP sessions doing what mail clients do, and LMTP senders
//! delivering generated mail (`mailgen`) to the users, as a relay does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{source, Account, Client, Recorder, Shared};
use crate::imap_client::Imap;
use crate::mailgen::{MailGen, Rng};
use crate::smtp_client::{Prepared, Reply, Smtp};

/// How long a legitimate client waits for any read or write; slower is an error.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The sender address of preloaded mail when MailGen's is unusable (never, but no unwrap).
const RELAY_NAME: &str = "relay.example";

/// Operation names, as printed.
pub const LOGIN_SELECT: &str = "login+SELECT";
pub const FETCH_ENVELOPE: &str = "UID FETCH (FLAGS ENVELOPE) x50";
pub const FETCH_BODYSTRUCTURE: &str = "UID FETCH (BODYSTRUCTURE) x20";
pub const FETCH_BODY: &str = "UID FETCH BODY.PEEK[] x1";
pub const SEARCH: &str = "UID SEARCH";
pub const NOOP: &str = "NOOP";
pub const IDLE: &str = "IDLE (answer times)";
pub const STATUS: &str = "STATUS INBOX";
pub const LMTP_CONNECT: &str = "connect+LHLO";
pub const LMTP_DELIVERY: &str = "delivery (MAIL..final reply)";

/// A logged-in session with INBOX selected and the UIDs it knows.
struct Session {
    imap: Imap,
    uids: Vec<u32>,
}

/// Connects from `source`, logs in, selects INBOX and lists its UIDs.
fn open(shared: &Shared, source: std::net::IpAddr, account: &Account) -> Result<Session, String> {
    let mut imap =
        Imap::connect(shared.target.imap, Some(source), CLIENT_TIMEOUT).map_err(|e| e.to_string())?;
    imap.login(&account.name, &account.password)
        .map_err(|e| e.to_string())?;
    imap.select("INBOX").map_err(|e| e.to_string())?;
    let r = imap.command("UID SEARCH ALL", true).map_err(|e| e.to_string())?;
    let mut uids = r.uids;
    uids.sort_unstable();
    Ok(Session { imap, uids })
}

/// One legitimate IMAP client until the load stops: log in, work for a while with think
/// times between commands, log out, again. Errors are counted, never fatal.
pub fn imap_session(shared: &Shared, id: usize, words: &[String]) -> Recorder {
    let mut rec = Recorder::default();
    let mut rng = Rng::new(0x50a6_0000 + id as u64);
    let account = &shared.accounts.legit[id % shared.accounts.legit.len()];
    let from = source::legit_imap(id);
    // Sessions start spread over the first seconds, as clients do.
    if !shared.sleep(Duration::from_millis(rng.below(3000))) {
        return rec;
    }
    while shared.running() {
        let t = Instant::now();
        let mut session = match open(shared, from, account) {
            Ok(s) => {
                rec.ok(shared, Client::Imap, LOGIN_SELECT, t);
                s
            }
            Err(e) => {
                rec.error(shared, Client::Imap, LOGIN_SELECT, &e);
                shared.sleep(Duration::from_millis(1000 + rng.below(2000)));
                continue;
            }
        };
        let commands = 20 + rng.below(100);
        let mut broken = false;
        for _ in 0..commands {
            // Think time between commands: 0.3 to 2 s.
            if !shared.sleep(Duration::from_millis(300 + rng.below(1700))) {
                break;
            }
            let (op, result) = one_command(shared, &mut session, &mut rng, words);
            match result {
                Ok(t) => rec.ok(shared, Client::Imap, op, t),
                Err(Failure::Answer(e)) => rec.error(shared, Client::Imap, op, &e),
                Err(Failure::Connection(e)) => {
                    rec.error(shared, Client::Imap, op, &e);
                    broken = true;
                    break;
                }
            }
        }
        if !broken {
            session.imap.logout();
        }
    }
    rec
}

/// Why a command failed: the server answered NO/BAD (the session goes on), or the
/// connection failed (timeout, closed: the client reconnects).
enum Failure {
    Answer(String),
    Connection(String),
}

/// Sends one command; the result carries when its clock started (IDLE's excludes the idling).
fn one_command(
    shared: &Shared,
    s: &mut Session,
    rng: &mut Rng,
    words: &[String],
) -> (&'static str, Result<Instant, Failure>) {
    let uids = &s.uids;
    let window = |rng: &mut Rng, n: usize| -> String {
        if uids.is_empty() {
            return "1:*".into();
        }
        // Mostly the newest messages (a client showing its list), sometimes older ones.
        let last = if rng.chance(0.6) {
            uids.len() - 1
        } else {
            rng.below(uids.len() as u64) as usize
        };
        let first = last.saturating_sub(n - 1);
        format!("{}:{}", uids[first], uids[last])
    };
    let word = |rng: &mut Rng| words[rng.below(words.len() as u64) as usize].clone();
    let roll = rng.below(100);
    let (op, cmd) = match roll {
        0..=24 => (
            FETCH_ENVELOPE,
            format!("UID FETCH {} (UID FLAGS ENVELOPE)", window(rng, 50)),
        ),
        25..=34 => (
            FETCH_BODYSTRUCTURE,
            format!("UID FETCH {} (UID BODYSTRUCTURE)", window(rng, 20)),
        ),
        35..=54 => {
            let one = if uids.is_empty() {
                "*".to_string()
            } else {
                uids[rng.below(uids.len() as u64) as usize].to_string()
            };
            (FETCH_BODY, format!("UID FETCH {one} BODY.PEEK[]"))
        }
        55..=69 => {
            let key = match rng.below(4) {
                0 => format!("TEXT \"{}\"", word(rng)),
                1 => format!("SUBJECT \"{}\"", word(rng)),
                2 => format!("FROM \"{}\"", word(rng)),
                _ => format!("SINCE {}-Jan-20{:02}", 1 + rng.below(28), 10 + rng.below(15)),
            };
            (SEARCH, format!("UID SEARCH {key}"))
        }
        70..=84 => (NOOP, "NOOP".into()),
        85..=89 => return (IDLE, idle(shared, s, rng)),
        _ => (STATUS, "STATUS INBOX (MESSAGES UIDNEXT UNSEEN)".into()),
    };
    let t = Instant::now();
    let before = s.imap.exists;
    let result = match s.imap.exchange(cmd.as_bytes(), false) {
        Ok(r) if r.ok() => Ok(t),
        Ok(r) => Err(Failure::Answer(format!("{cmd:.40}: {:.100}", r.status))),
        Err(e) => Err(Failure::Connection(e.to_string())),
    };
    if result.is_ok() && s.imap.exists > before {
        // New mail arrived: learn its UIDs, as a client does (not timed).
        let next = s.uids.last().map_or(1, |u| u + 1);
        if let Ok(r) = s
            .imap
            .exchange(format!("UID SEARCH UID {next}:*").as_bytes(), true)
        {
            s.uids.extend(r.uids.into_iter().filter(|u| *u >= next));
        }
    }
    (op, result)
}

/// IDLE for 1–3 s, then DONE. Times the wait for the `+` and for the tagged OK after DONE.
fn idle(shared: &Shared, s: &mut Session, rng: &mut Rng) -> Result<Instant, Failure> {
    let connection = |e: String| Failure::Connection(format!("IDLE: {e}"));
    let t = Instant::now();
    let tag = s.imap.send(b"IDLE").map_err(|e| connection(e.to_string()))?;
    let line = s.imap.read_line().map_err(|e| connection(e.to_string()))?;
    if !line.starts_with('+') {
        return Err(if line.starts_with(&tag) {
            Failure::Answer(format!("IDLE: {line:.100}"))
        } else {
            connection(format!("expected +, got {line:.100}"))
        });
    }
    let to_continuation = t.elapsed();
    shared.sleep(Duration::from_millis(1000 + rng.below(2000)));
    let done = Instant::now();
    s.imap
        .send_raw(b"DONE\r\n")
        .map_err(|e| connection(e.to_string()))?;
    let r = s
        .imap
        .read_tagged(&tag, false)
        .map_err(|e| connection(e.to_string()))?;
    if !r.ok() {
        return Err(Failure::Answer(format!("IDLE: {:.100}", r.status)));
    }
    // A start such that elapsed() is the two waits together.
    let waited = to_continuation + done.elapsed();
    Ok(Instant::now().checked_sub(waited).unwrap_or(t))
}

/// An LMTP connection that has said LHLO.
fn lmtp_open(addr: SocketAddr, from: std::net::IpAddr) -> Result<Smtp, String> {
    let mut c = Smtp::connect(addr, Some(from), CLIENT_TIMEOUT)?;
    c.expect(220, "the greeting")?;
    c.send(b"LHLO relay.example\r\n")?;
    c.expect(250, "LHLO")?;
    Ok(c)
}

/// One LMTP transaction (pipelined MAIL, RCPTs, DATA; then the message); the replies to
/// the final dot, one per recipient. An unexpected reply is an error.
pub fn deliver(c: &mut Smtp, from: &str, rcpts: &[&str], message: &Prepared) -> Result<Vec<Reply>, String> {
    let mut envelope = format!("MAIL FROM:<{from}>\r\n");
    for r in rcpts {
        envelope.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    envelope.push_str("DATA\r\n");
    c.send(envelope.as_bytes())?;
    c.expect(250, "MAIL")?;
    for _ in rcpts {
        c.expect(250, "RCPT")?;
    }
    c.expect(354, "DATA")?;
    c.send(&message.wire)?;
    let mut replies = Vec::with_capacity(rcpts.len());
    for _ in rcpts {
        let reply = c.reply()?;
        if reply.code != 250 {
            return Err(format!("the message was answered {:?}", reply.text));
        }
        replies.push(reply);
    }
    Ok(replies)
}

/// One legitimate LMTP sender until the load stops: generated mail to 1–3 users each, a
/// pause of 0–2×`pause` between messages, a new connection every 50–250 messages.
pub fn lmtp_sender(shared: &Shared, id: usize, pause: Duration) -> Recorder {
    let mut rec = Recorder::default();
    let mut rng = Rng::new(0x1e77_0000 + id as u64);
    let mut gen = MailGen::new(1000 + id as u64, 100_000);
    let users = &shared.accounts.legit;
    while shared.running() {
        let t = Instant::now();
        let mut c = match lmtp_open(shared.target.lmtp, source::lmtp_relay(id)) {
            Ok(c) => {
                rec.ok(shared, Client::Lmtp, LMTP_CONNECT, t);
                c
            }
            Err(e) => {
                rec.error(shared, Client::Lmtp, LMTP_CONNECT, &e);
                shared.sleep(Duration::from_millis(1000 + rng.below(1000)));
                continue;
            }
        };
        let transactions = 50 + rng.below(200);
        let mut broken = false;
        for _ in 0..transactions {
            let wait = rng.below(2 * pause.as_millis() as u64 + 1);
            if !shared.sleep(Duration::from_millis(wait)) {
                break;
            }
            let generated = gen.next_message();
            let message = Prepared::new(&generated.raw);
            let n = 1 + rng.below(3) as usize;
            let mut rcpts: Vec<&str> = Vec::with_capacity(n);
            while rcpts.len() < n.min(users.len()) {
                let u = users[rng.below(users.len() as u64) as usize].address.as_str();
                if !rcpts.contains(&u) {
                    rcpts.push(u);
                }
            }
            let t = Instant::now();
            match deliver(&mut c, &generated.mail_from, &rcpts, &message) {
                Ok(replies) => {
                    rec.ok(shared, Client::Lmtp, LMTP_DELIVERY, t);
                    shared
                        .deliveries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    shared
                        .delivered_recipients
                        .fetch_add(replies.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => {
                    rec.error(shared, Client::Lmtp, LMTP_DELIVERY, &e);
                    broken = true;
                    break;
                }
            }
        }
        if !broken && c.send(b"QUIT\r\n").is_ok() {
            let _ = c.reply();
        }
    }
    rec
}

/// Delivers `count` generated messages before the load starts, round-robin to every
/// account (one recipient each), over 4 connections; returns how many were acknowledged.
pub fn preload(lmtp: SocketAddr, accounts: &[Account], count: usize) -> Result<u64, String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let acked = std::sync::atomic::AtomicU64::new(0);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (next, acked, errors) = (&next, &acked, &errors);
            s.spawn(move || {
                let run = || -> Result<(), String> {
                    let mut c = lmtp_open(lmtp, source::lmtp_relay(t as usize))?;
                    let mut gen = MailGen::new(7 + t, count as u64);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count {
                            return Ok(());
                        }
                        let generated = gen.next_message();
                        let from = if generated.mail_from.is_empty() {
                            format!("preload@{RELAY_NAME}")
                        } else {
                            generated.mail_from.clone()
                        };
                        let rcpt = accounts[i % accounts.len()].address.as_str();
                        deliver(&mut c, &from, &[rcpt], &Prepared::new(&generated.raw))?;
                        acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                };
                if let Err(e) = run() {
                    errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    match errors.first() {
        Some(e) => Err(format!("preloading: {e}")),
        None => Ok(acked.into_inner()),
    }
}
