//! The soak benchmark's parts (`bench/src/bin/soak.rs`, bench/README.md `## soak`):
//! legitimate IMAP sessions and LMTP senders ([`legit`]), the attacker ([`attacks`]), and
//! what they share: the server's addresses, the accounts, the clock, and the figures.

pub mod attacks;
pub mod legit;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Attack numbers, as in issue #10's list of findings (there is no 10).
pub const ATTACKS: [usize; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11];
/// Phases: 0 while no attack runs, else the attack's number.
pub const PHASES: usize = 12;

/// Client kinds, for errors per attack phase.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Client {
    Imap,
    Lmtp,
}

impl Client {
    pub fn name(self) -> &'static str {
        match self {
            Client::Imap => "IMAP",
            Client::Lmtp => "LMTP",
        }
    }
}

/// A user of the archive, with the password the bench gave it.
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
    pub address: String,
    pub password: String,
}

/// The accounts: the legitimate users (sessions and deliveries spread over them), the
/// victim of attacks 1, 3 and 8, and the attacker's own account.
#[derive(Clone, Debug)]
pub struct Accounts {
    pub legit: Vec<Account>,
    pub victim: Account,
    pub mallory: Account,
}

impl Accounts {
    /// `n` legitimate users `user0…`, `victim` and `mallory`, all `@example.com`.
    pub fn new(n: usize) -> Accounts {
        let account = |name: String| Account {
            address: format!("{name}@example.com"),
            password: format!("soak-{name}-password"),
            name,
        };
        Accounts {
            legit: (0..n).map(|i| account(format!("user{i}"))).collect(),
            victim: account("victim".into()),
            mallory: account("mallory".into()),
        }
    }

    /// Every account, legitimate ones first.
    pub fn all(&self) -> impl Iterator<Item = &Account> {
        self.legit.iter().chain([&self.victim, &self.mallory])
    }
}

/// The server's listeners and process.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub imap: SocketAddr,
    pub lmtp: SocketAddr,
    pub smtp: SocketAddr,
    pub pid: u32,
}

/// Source addresses. Every client binds one before connecting, so the server's per-address
/// limits see a realistic spread: legitimate IMAP clients 5 to an address from 127.1.0.10 on;
/// the LMTP relays 8 senders to an address from 127.2.0.10 on; the monitor's probe 127.0.0.3;
/// the end check 127.0.0.4; legitimate logins during attacks 127.0.0.5; the victim's own
/// client 127.0.0.6; the attacker a fresh address from 127.0.1.1 on for each use. (Linux
/// routes all of 127.0.0.0/8 to loopback.)
pub mod source {
    use super::*;

    pub const PROBE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    pub const END_CHECK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
    pub const LEGIT_DURING_ATTACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));
    pub const VICTIM: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6));
    /// Legitimate IMAP sessions per source address.
    pub const SESSIONS_PER_ADDRESS: usize = 5;
    /// LMTP senders per relay address.
    pub const SENDERS_PER_RELAY: usize = 8;

    /// The address of legitimate IMAP session `id`: 127.1.0.10 and on.
    pub fn legit_imap(id: usize) -> IpAddr {
        nth(0x01_0000 + 10 + id / SESSIONS_PER_ADDRESS)
    }

    /// The relay address of LMTP sender `id`: 127.2.0.10 and on.
    pub fn lmtp_relay(id: usize) -> IpAddr {
        nth(0x02_0000 + 10 + id / SENDERS_PER_RELAY)
    }

    /// The `k`th attacker address: 127.0.1.1, 127.0.1.2, … (1…250 in each /24).
    pub fn attacker(k: usize) -> IpAddr {
        nth(256 + (k / 250) * 256 + 1 + k % 250)
    }

    /// 127.0.0.0 + n.
    fn nth(n: usize) -> IpAddr {
        let n = n as u32 & 0x00ff_ffff;
        IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | n))
    }
}

/// State all threads share.
pub struct Shared {
    pub target: Target,
    pub accounts: Accounts,
    pub start: Instant,
    /// When the legitimate load stops.
    pub deadline: Instant,
    stop: AtomicBool,
    /// The attack running now (0: none).
    pub phase: AtomicUsize,
    /// The last attack started (0: none yet).
    pub last_attack: AtomicUsize,
    /// Legitimate operations and errors per phase, by client kind.
    phase_ops: [[AtomicU64; PHASES]; 2],
    phase_errors: [[AtomicU64; PHASES]; 2],
    /// Messages acknowledged to the legitimate LMTP senders (per recipient: one reply each).
    pub deliveries: AtomicU64,
    pub delivered_recipients: AtomicU64,
}

impl Shared {
    pub fn new(target: Target, accounts: Accounts, secs: u64) -> Shared {
        let start = Instant::now();
        Shared {
            target,
            accounts,
            start,
            deadline: start + Duration::from_secs(secs),
            stop: AtomicBool::new(false),
            phase: AtomicUsize::new(0),
            last_attack: AtomicUsize::new(0),
            phase_ops: Default::default(),
            phase_errors: Default::default(),
            deliveries: AtomicU64::new(0),
            delivered_recipients: AtomicU64::new(0),
        }
    }

    /// Whether the load goes on: before the deadline and until told to stop.
    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    /// Stops every client at its next check (the server died, or the run is over).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Sleeps up to `d`, waking early when the load stops; false if it stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while self.running() {
            let now = Instant::now();
            if now >= until {
                return true;
            }
            thread::sleep((until - now).min(Duration::from_millis(100)));
        }
        false
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn count(&self, client: Client, error: bool) {
        let phase = self.phase.load(Ordering::Relaxed).min(PHASES - 1);
        let table = if error {
            &self.phase_errors
        } else {
            &self.phase_ops
        };
        table[client as usize][phase].fetch_add(1, Ordering::Relaxed);
    }

    /// (operations, errors) of legitimate `client`s during `phase`.
    pub fn phase_figures(&self, client: Client, phase: usize) -> (u64, u64) {
        (
            self.phase_ops[client as usize][phase].load(Ordering::Relaxed),
            self.phase_errors[client as usize][phase].load(Ordering::Relaxed),
        )
    }

    /// (operations, errors) of legitimate `client`s so far.
    pub fn totals(&self, client: Client) -> (u64, u64) {
        (0..PHASES)
            .map(|p| self.phase_figures(client, p))
            .fold((0, 0), |(a, b), (o, e)| (a + o, b + e))
    }
}

/// One operation type's figures.
#[derive(Default)]
pub struct OpStats {
    /// Latencies of the successful ones, microseconds.
    pub latencies: Vec<u32>,
    pub errors: u64,
    /// Distinct error messages (at most 6 kept) and how often each came.
    pub samples: BTreeMap<String, u64>,
}

impl OpStats {
    /// The `q` quantile of the latencies in milliseconds (nearest rank); the list must be sorted.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank = ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        f64::from(self.latencies[rank - 1]) / 1000.0
    }
}

/// Figures per (client kind, operation type); each thread keeps its own and they are merged.
#[derive(Default)]
pub struct Recorder {
    pub ops: BTreeMap<(Client, &'static str), OpStats>,
}

impl Recorder {
    /// A successful operation that started at `since`.
    pub fn ok(&mut self, shared: &Shared, client: Client, op: &'static str, since: Instant) {
        let micros = u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.ops.entry((client, op)).or_default().latencies.push(micros);
        shared.count(client, false);
    }

    /// A failed operation.
    pub fn error(&mut self, shared: &Shared, client: Client, op: &'static str, error: &str) {
        let stats = self.ops.entry((client, op)).or_default();
        stats.errors += 1;
        let sample: String = error.chars().take(160).collect();
        if let Some(n) = stats.samples.get_mut(&sample) {
            *n += 1;
        } else if stats.samples.len() < 6 {
            stats.samples.insert(sample, 1);
        }
        shared.count(client, true);
    }

    /// Adds another thread's figures.
    pub fn merge(&mut self, other: Recorder) {
        for (key, stats) in other.ops {
            let into = self.ops.entry(key).or_default();
            into.latencies.extend(stats.latencies);
            into.errors += stats.errors;
            for (sample, n) in stats.samples {
                if let Some(m) = into.samples.get_mut(&sample) {
                    *m += n;
                } else if into.samples.len() < 6 {
                    into.samples.insert(sample, n);
                }
            }
        }
    }

    /// Sorts every latency list (for the quantiles).
    pub fn finish(&mut self) {
        for stats in self.ops.values_mut() {
            stats.latencies.sort_unstable();
        }
    }
}
