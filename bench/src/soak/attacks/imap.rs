//! The attacks on the IMAP front door: 1, 2, 4, 5, 6 and 11.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{archived_seq, failure, step, Ctx, Step, ANSWER_TIMEOUT};
use crate::imap_client::Imap;
use crate::smtp_client::Prepared;
use crate::soak::legit::deliver;
use crate::soak::source;

/// 1: deeply nested multipart to the victim, then the victim's own client syncs it.
pub(super) fn nested_multipart(ctx: &mut Ctx) -> Vec<Step> {
    let mut steps = Vec::new();
    let victim = ctx.shared.accounts.victim.clone();
    for depth in [2_000usize, 20_000] {
        let what = format!("{depth} levels");
        let mut raw = format!(
            "From: <mallory@evil.example>\r\nTo: <{}>\r\nSubject: nested {depth}\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n",
            victim.address
        );
        for level in 1..depth {
            raw.push_str(&format!(
                "--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n",
                level - 1
            ));
        }
        raw.push_str(&format!(
            "--b{}\r\nContent-Type: text/plain\r\n\r\nx\r\n",
            depth - 1
        ));
        for level in (0..depth).rev() {
            raw.push_str(&format!("--b{level}--\r\n"));
        }
        let message = Prepared::new(raw.as_bytes());
        let t = Instant::now();
        let from = ctx.fresh_source();
        let delivered = ctx
            .smtp(true, from)
            .and_then(|mut c| deliver(&mut c, "mallory@evil.example", &[&victim.address], &message));
        let seq = match delivered {
            Ok(replies) => {
                let text = replies.first().map(|r| r.text.clone()).unwrap_or_default();
                steps.push(step(
                    &format!("{what}: LMTP delivery ({} KB)", message.wire.len() / 1000),
                    format!("{text:.80}"),
                    t,
                ));
                archived_seq(&text)
            }
            Err(e) => {
                let timeout = ctx.timeout().unwrap_or(ANSWER_TIMEOUT);
                steps.push(step(&format!("{what}: LMTP delivery"), failure(&e, timeout), t));
                None
            }
        };
        let Some(uid) = seq else { continue };
        let t = Instant::now();
        let mut c = match ctx.imap(source::VICTIM, &victim) {
            Ok(c) => c,
            Err(e) => {
                steps.push(step(
                    &format!("{what}: victim login"),
                    failure(&e, ANSWER_TIMEOUT),
                    t,
                ));
                continue;
            }
        };
        // Wait (bounded) until the victim's view has the message.
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            match c.exchange(format!("UID FETCH {uid} (UID)").as_bytes(), true) {
                Ok(r) if r.uids.contains(&uid) => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(300)),
                Err(_) => break,
            }
        }
        let (s, r) = ctx.imap_step(
            &mut c,
            &format!("{what}: UID FETCH BODYSTRUCTURE"),
            format!("UID FETCH {uid} BODYSTRUCTURE").as_bytes(),
        );
        steps.push(s);
        if r.is_none() {
            continue;
        }
        let (s, _) = ctx.imap_step(
            &mut c,
            &format!("{what}: UID FETCH BODY[]"),
            format!("UID FETCH {uid} BODY[]").as_bytes(),
        );
        steps.push(s);
        c.logout();
    }
    steps
}

/// 2: LIST with many wildcards.
pub(super) fn list_wildcards(ctx: &mut Ctx) -> Vec<Step> {
    let mut c = match mallory_session(ctx) {
        Ok(c) => c,
        Err(login_failed) => return vec![login_failed],
    };
    let mut steps = Vec::new();
    let stars100 = format!("LIST \"\" \"{}\"", "*".repeat(100));
    steps.push(ctx.imap_step(&mut c, "LIST \"\" 100 '*'", stars100.as_bytes()).0);
    let stars2000 = format!("LIST \"\" \"{}Z\"", "*".repeat(2000));
    steps.push(
        ctx.imap_step(&mut c, "LIST \"\" 2,000 '*' + Z", stars2000.as_bytes())
            .0,
    );
    c.logout();
    steps
}

/// 4: 16,000 ranges in one FETCH and one SEARCH.
pub(super) fn many_ranges(ctx: &mut Ctx) -> Vec<Step> {
    let mut c = match mallory_session(ctx) {
        Ok(c) => c,
        Err(login_failed) => return vec![login_failed],
    };
    let set = vec!["1:*"; 16_000].join(",");
    let mut steps = Vec::new();
    let (s, r) = ctx.imap_step(
        &mut c,
        "FETCH 16,000 x 1:* (FLAGS)",
        format!("FETCH {set} (FLAGS)").as_bytes(),
    );
    steps.push(s);
    if r.is_some() {
        steps.push(
            ctx.imap_step(&mut c, "SEARCH 16,000 x 1:*", format!("SEARCH {set}").as_bytes())
                .0,
        );
    }
    c.logout();
    steps
}

/// CPU seconds (user + system) the server has used, from /proc.
fn server_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// 5: SEARCH with 5,000 TEXT keys, once awaited, once abandoned.
pub(super) fn many_text_keys(ctx: &mut Ctx) -> Vec<Step> {
    let mallory = ctx.shared.accounts.mallory.clone();
    let keys: String = (0..5000).map(|i| format!(" TEXT w{i:04}")).collect();
    let cmd = format!("SEARCH{keys}");
    let mut steps = Vec::new();
    let t = Instant::now();
    let from = ctx.fresh_source();
    match ctx.imap(from, &mallory) {
        Ok(mut c) => {
            let what = format!("SEARCH 5,000 TEXT keys ({} KB), answer awaited", cmd.len() / 1000);
            let (s, r) = ctx.imap_step(&mut c, &what, cmd.as_bytes());
            steps.push(s);
            if r.is_some() {
                c.logout();
            }
        }
        Err(e) => steps.push(step("login", failure(&e, ANSWER_TIMEOUT), t)),
    }
    let t = Instant::now();
    let from = ctx.fresh_source();
    match ctx.imap(from, &mallory) {
        Ok(mut c) => {
            let before = server_cpu(ctx.shared.target.pid);
            let sent = c.send(cmd.as_bytes());
            std::thread::sleep(Duration::from_millis(300));
            drop(c);
            let what = "same, disconnected 0.3 s after sending";
            steps.push(step(
                what,
                match sent {
                    Ok(_) => "sent; disconnected".into(),
                    Err(e) => failure(&e.to_string(), ANSWER_TIMEOUT),
                },
                t,
            ));
            let watch = Duration::from_secs(5).min(ctx.until.saturating_duration_since(Instant::now()));
            let t = Instant::now();
            std::thread::sleep(watch);
            let answer = match (before, server_cpu(ctx.shared.target.pid)) {
                (Some(a), Some(b)) => format!(
                    "{:.1} CPU-s in {:.1} s (the whole server, legitimate load included)",
                    b - a,
                    t.elapsed().as_secs_f64() + 0.3
                ),
                _ => "server process gone".into(),
            };
            steps.push(step(
                "server CPU from sending until 5 s after the disconnect",
                answer,
                t,
            ));
        }
        Err(e) => steps.push(step("login", failure(&e, ANSWER_TIMEOUT), t)),
    }
    steps
}

/// 6: wrong passwords for a legitimate user from an attacker address, then that user logs
/// in from another address.
pub(super) fn password_guessing(ctx: &mut Ctx) -> Vec<Step> {
    let user = ctx.shared.accounts.legit[1 % ctx.shared.accounts.legit.len()].clone();
    let from = ctx.fresh_source();
    let t = Instant::now();
    let mut answers: BTreeMap<String, u32> = BTreeMap::new();
    let mut conn: Option<Imap> = None;
    for guess in 0..12 {
        let Some(timeout) = ctx.timeout() else { break };
        if conn.is_none() {
            match Imap::connect(ctx.shared.target.imap, Some(from), timeout) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    *answers.entry(failure(&e.to_string(), timeout)).or_default() += 1;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let cmd = format!("LOGIN \"{}\" \"wrong-password-{guess}\"", user.name);
        match c.exchange(cmd.as_bytes(), false) {
            Ok(r) => *answers.entry(format!("{:.70}", r.status)).or_default() += 1,
            Err(e) => {
                *answers.entry(failure(&e.to_string(), timeout)).or_default() += 1;
                conn = None;
            }
        }
    }
    let summary: Vec<String> = answers.iter().map(|(a, n)| format!("{n} x {a}")).collect();
    let mut steps = vec![step(
        &format!("12 wrong passwords for {} from {from}", user.name),
        summary.join("; "),
        t,
    )];
    let t = Instant::now();
    let answer = match ctx.timeout() {
        None => "not tried: attack time limit reached".into(),
        Some(timeout) => {
            match Imap::connect(ctx.shared.target.imap, Some(source::LEGIT_DURING_ATTACK), timeout) {
                Ok(mut c) => match c.exchange(
                    format!("LOGIN \"{}\" \"{}\"", user.name, user.password).as_bytes(),
                    false,
                ) {
                    Ok(r) => {
                        c.logout();
                        format!("{:.90}", r.status)
                    }
                    Err(e) => failure(&e.to_string(), timeout),
                },
                Err(e) => failure(&e.to_string(), timeout),
            }
        }
    };
    steps.push(step(
        &format!(
            "{} logs in with the right password from {}",
            user.name,
            source::LEGIT_DURING_ATTACK
        ),
        answer,
        t,
    ));
    steps
}

/// 11: SEARCH with deep nesting.
pub(super) fn nested_search(ctx: &mut Ctx) -> Vec<Step> {
    let mut c = match mallory_session(ctx) {
        Ok(c) => c,
        Err(login_failed) => return vec![login_failed],
    };
    let parens = format!("SEARCH {}ALL{}", "(".repeat(10_000), ")".repeat(10_000));
    let nots = format!("SEARCH {}ALL", "NOT ".repeat(10_000));
    let ors = format!("SEARCH {}{}", "OR ".repeat(100), vec!["ALL"; 101].join(" "));
    let mut steps = Vec::new();
    for (what, cmd) in [
        ("SEARCH 10,000 nested parentheses", parens),
        ("SEARCH 10,000 NOTs", nots),
        ("SEARCH 100 nested ORs", ors),
    ] {
        let (s, r) = ctx.imap_step(&mut c, what, cmd.as_bytes());
        steps.push(s);
        if r.is_none() {
            // The connection is gone; a new one for the next step.
            match mallory_session(ctx) {
                Ok(new) => c = new,
                Err(mut login_failed) => {
                    login_failed.what = "login again".into();
                    steps.push(login_failed);
                    return steps;
                }
            }
        }
    }
    c.logout();
    steps
}

/// Mallory logged in from a fresh attacker address, or the step that says why not.
fn mallory_session(ctx: &mut Ctx) -> Result<Imap, Step> {
    let mallory = ctx.shared.accounts.mallory.clone();
    let t = Instant::now();
    let from = ctx.fresh_source();
    ctx.imap(from, &mallory)
        .map_err(|e| step("login", failure(&e, ANSWER_TIMEOUT), t))
}
