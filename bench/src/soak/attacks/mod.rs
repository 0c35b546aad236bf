//! The attacker: replays issue #10's security findings against the server, each step bounded
//! in count and time, all on loopback, and records what the server answered. Legitimate
//! clients' errors are counted per attack by the phase it sets.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod imap;
mod intake;

use super::{source, Account, Shared, ATTACKS};
use crate::imap_client::{Imap, Response};
use crate::smtp_client::Smtp;
use crate::BenchResult;
use imap::{list_wildcards, many_ranges, many_text_keys, nested_multipart, nested_search, password_guessing};
use intake::{bdat_smuggling, idle_connections, journal_forgery, smtp_auth_guessing};

/// The longest one attack may take (it is cut at the end of the run too).
const ATTACK_LIMIT: Duration = Duration::from_secs(60);
/// The longest the attacker waits for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// What the attacker saw at one step.
pub struct Step {
    pub what: String,
    pub answer: String,
    pub secs: f64,
}

/// One step's distinct answers: the answer with digits as `#` → (the first full answer, how
/// often, the longest time in seconds).
pub type Answers = BTreeMap<String, (String, u32, f64)>;

/// What every round of every attack answered, for the report.
#[derive(Default)]
pub struct AttackLog {
    /// Rounds run (or cut) per attack.
    pub rounds: BTreeMap<usize, u32>,
    /// Per attack, per step: distinct answers (digits replaced by `#`) with the first full
    /// text, how often, and the longest time.
    pub answers: BTreeMap<usize, Vec<(String, Answers)>>,
}

impl AttackLog {
    fn add(&mut self, attack: usize, steps: Vec<Step>) {
        *self.rounds.entry(attack).or_default() += 1;
        let list = self.answers.entry(attack).or_default();
        for s in steps {
            let at = match list.iter().position(|(w, _)| *w == s.what) {
                Some(i) => i,
                None => {
                    list.push((s.what.clone(), BTreeMap::new()));
                    list.len() - 1
                }
            };
            let key: String = s
                .answer
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect();
            let e = list[at].1.entry(key).or_insert((s.answer.clone(), 0, 0.0));
            e.1 += 1;
            e.2 = e.2.max(s.secs);
        }
    }
}

/// One line describing what the attack is.
pub fn describe(attack: usize) -> &'static str {
    match attack {
        1 => "nested multipart/mixed (2,000 and 20,000 levels) to the victim; the victim's client fetches BODYSTRUCTURE and BODY[]",
        2 => "LIST \"\" with 100 '*' and with 2,000 '*' + \"Z\"",
        3 => "forged X-MS-Journal-Report naming the victim as recipient",
        4 => "FETCH and SEARCH with 16,000 ranges 1:*,1:*,... (64 KB)",
        5 => "SEARCH with 5,000 TEXT keys; once awaited, once disconnecting mid-search",
        6 => "12 wrong passwords for a legitimate user from an attacker address; then the user logs in from another",
        7 => "300 idle IMAP, 300 idle LMTP, 300 idle SMTP connections held 15 s, and a trickled DATA",
        8 => "BDAT 99999999999999999999010 LAST followed by a smuggled transaction",
        9 => "SMTP AUTH PLAIN guessing (30 guesses)",
        11 => "SEARCH with 10,000 nested parentheses, 10,000 NOTs, and 100 nested ORs",
        _ => "unknown",
    }
}

/// The attacker's loop: after `warmup`, every selected attack in turn, round after round,
/// until the load stops.
pub fn run(shared: &Shared, selected: &[usize], warmup: Duration) -> AttackLog {
    let mut log = AttackLog::default();
    let mut ctx = Ctx {
        shared,
        next_source: 0,
        until: Instant::now(),
    };
    if selected.is_empty() || !shared.sleep(warmup) {
        return log;
    }
    'rounds: loop {
        for &attack in selected {
            if !shared.running() {
                break 'rounds;
            }
            ctx.until = (Instant::now() + ATTACK_LIMIT).min(shared.deadline);
            shared.last_attack.store(attack, Ordering::Relaxed);
            shared.phase.store(attack, Ordering::Relaxed);
            let steps = match attack {
                1 => nested_multipart(&mut ctx),
                2 => list_wildcards(&mut ctx),
                3 => journal_forgery(&mut ctx),
                4 => many_ranges(&mut ctx),
                5 => many_text_keys(&mut ctx),
                6 => password_guessing(&mut ctx),
                7 => idle_connections(&mut ctx),
                8 => bdat_smuggling(&mut ctx),
                9 => smtp_auth_guessing(&mut ctx),
                11 => nested_search(&mut ctx),
                _ => Vec::new(),
            };
            shared.phase.store(0, Ordering::Relaxed);
            log.add(attack, steps);
            if !shared.sleep(Duration::from_secs(1)) {
                break 'rounds;
            }
        }
    }
    log
}

/// The attacker's state during one attack.
struct Ctx<'a> {
    shared: &'a Shared,
    next_source: usize,
    /// This attack's time limit.
    until: Instant,
}

impl Ctx<'_> {
    /// A source address not used before.
    fn fresh_source(&mut self) -> IpAddr {
        self.next_source += 1;
        source::attacker(self.next_source)
    }

    /// Time left for this attack, at most `ANSWER_TIMEOUT`; None when it is up.
    fn timeout(&self) -> Option<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        (left > Duration::from_millis(50)).then(|| left.min(ANSWER_TIMEOUT))
    }

    /// An IMAP connection from `from`, logged in as `account` with INBOX selected.
    fn imap(&self, from: IpAddr, account: &Account) -> Result<Imap, String> {
        let timeout = self.timeout().ok_or("attack time limit reached")?;
        let mut c = Imap::connect(self.shared.target.imap, Some(from), timeout).map_err(|e| e.to_string())?;
        c.login(&account.name, &account.password)
            .map_err(|e| e.to_string())?;
        c.select("INBOX").map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// Sends an IMAP command and describes the answer.
    fn imap_step(&self, c: &mut Imap, what: &str, cmd: &[u8]) -> (Step, Option<Response>) {
        let t = Instant::now();
        let Some(timeout) = self.timeout() else {
            return (step(what, "not sent: attack time limit reached".into(), t), None);
        };
        let _ = c.set_timeout(timeout);
        match c.exchange(cmd, false) {
            Ok(r) => {
                let answer = format!(
                    "{:.90} ({} untagged responses, {} bytes)",
                    r.status, r.untagged, r.bytes
                );
                (step(what, answer, t), Some(r))
            }
            Err(e) => (step(what, failure(&e.to_string(), timeout), t), None),
        }
    }

    /// An SMTP or LMTP connection from `from` that has read the greeting and said EHLO/LHLO.
    fn smtp(&self, lmtp: bool, from: IpAddr) -> Result<Smtp, String> {
        let timeout = self.timeout().ok_or("attack time limit reached")?;
        let addr = if lmtp {
            self.shared.target.lmtp
        } else {
            self.shared.target.smtp
        };
        let mut c = Smtp::connect(addr, Some(from), timeout)?;
        c.expect(220, "the greeting")?;
        c.send(if lmtp {
            b"LHLO attacker.example\r\n"
        } else {
            b"EHLO attacker.example\r\n"
        })?;
        c.expect(250, "EHLO")?;
        Ok(c)
    }
}

fn step(what: &str, answer: String, since: Instant) -> Step {
    Step {
        what: what.to_string(),
        answer,
        secs: since.elapsed().as_secs_f64(),
    }
}

/// A client-side failure in words: no answer in time, closed, reset, refused.
fn failure(error: &str, timeout: Duration) -> String {
    let e = error.to_ascii_lowercase();
    if e.contains("timed out") || e.contains("would block") || e.contains("temporarily unavailable") {
        format!("no answer within {:.0} s", timeout.as_secs_f64())
    } else if e.contains("closed") {
        format!("connection closed ({error:.100})")
    } else if e.contains("reset") || e.contains("broken pipe") {
        "connection reset".into()
    } else if e.contains("refused") {
        "connection refused (server down?)".into()
    } else {
        format!("{error:.120}")
    }
}

/// The `seq=N` of an archive reply.
fn archived_seq(reply: &str) -> Option<u32> {
    reply
        .split_whitespace()
        .find_map(|w| w.strip_prefix("seq=")?.parse().ok())
}

/// A unique token for the message an attack sends, to look for afterwards.
fn token(shared: &Shared, attack: usize) -> String {
    format!("soak{attack}x{}", shared.start.elapsed().as_millis())
}

/// Whether a message whose ENVELOPE contains `token` is in `account`'s INBOX among the
/// UIDs around `seqs`; polls for up to 10 s (the mailbox view follows the log's index).
fn landed(ctx: &Ctx, account: &Account, seqs: &[u32], token: &str) -> String {
    let (Some(&lo), Some(&hi)) = (seqs.iter().min(), seqs.iter().max()) else {
        return "nothing archived to look for".into();
    };
    let range = format!("{}:{}", lo.saturating_sub(20).max(1), hi + 20);
    let mut c = match ctx.imap(source::VICTIM, account) {
        Ok(c) => c,
        Err(e) => return format!("could not check: {e:.100}"),
    };
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match c.exchange(format!("UID FETCH {range} (UID ENVELOPE)").as_bytes(), true) {
            Ok(r) if r.text.contains(token) => {
                c.logout();
                return format!("LANDED in {}'s INBOX (UIDs {range})", account.name);
            }
            Ok(_) => {}
            Err(e) => return format!("could not check: {e:.100}"),
        }
        if Instant::now() >= until || ctx.timeout().is_none() {
            c.logout();
            return format!("not in {}'s INBOX (UIDs {range} checked for 10 s)", account.name);
        }
        std::thread::sleep(Duration::from_millis(500));
        let _ = c.exchange(b"NOOP", false);
    }
}

/// Parses `--attacks`: `all`, `none`, or a comma-separated list of attack numbers.
pub fn parse_selection(text: &str) -> BenchResult<Vec<usize>> {
    match text.trim() {
        "all" => return Ok(ATTACKS.to_vec()),
        "none" => return Ok(Vec::new()),
        _ => {}
    }
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<usize>() {
            Ok(n) if ATTACKS.contains(&n) => {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
            _ => {
                return crate::fail(format!(
                    "--attacks: {part:?} is not one of {ATTACKS:?}, all or none"
                ))
            }
        }
    }
    Ok(out)
}
