//! Failed-login rate limiting for the front doors. A front door asks [`LoginLimiter::check`]
//! before it verifies a password (so a limited client costs no Argon2 work) and reports the
//! outcome afterwards.
//!
//! Failures never lock a name out everywhere: that would let anyone lock out any user from
//! anywhere by guessing wrong on purpose (issue #10, defect 6). Instead, like Dovecot's auth
//! penalty and fail2ban, limits follow where the failures come from:
//!
//! - **Per name and client network**: after [`FREE_FAILURES`] failures of one name from one
//!   network within [`BACKOFF_WINDOW`], each further attempt waits [`BACKOFF_BASE`], doubling
//!   with every failure up to [`MAX_BACKOFF`]. The same name from another network is not
//!   slowed at all.
//! - **Per client network**: at most [`NETWORK_FAILURES`] failures (any names) within
//!   [`WINDOW`].
//! - **Per name, from everywhere**: [`NAME_CEILING`] failures within [`WINDOW`] (far above what
//!   one network may cause) limit the name against distributed guessing — but only from
//!   networks where the name has not logged in successfully within [`KNOWN_GOOD_FOR`]. The
//!   real user's own networks keep working.
//!
//! A client network is an IPv4 address (IPv4-mapped IPv6 included) or an IPv6 /64 (one host
//! usually holds a whole /64, so counting single IPv6 addresses would limit nothing). IPv4 is
//! not widened to a /24: neighbours in a /24 are often unrelated (hosting, carrier NAT pools),
//! and one address already stands for a whole NAT'ed site.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] entries per table, each with a bounded number
//! of timestamps (a few MiB at worst). When a table is full, expired entries go first, then the
//! entry whose last event is oldest. An attacker who floods a table can push entries out
//! early; the per-network limit still holds them back.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::names::login_key;

/// Failures of one name from one network before attempts are slowed down.
pub const FREE_FAILURES: usize = 3;
/// The first wait once [`FREE_FAILURES`] is reached; it doubles with each further failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// The longest wait between two attempts of one name from one network.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Failures of one name from one network remembered (enough to reach [`MAX_BACKOFF`]).
const PAIR_REMEMBERED: usize = 16;
/// How long a failure of one name from one network counts towards its backoff: longer than
/// [`MAX_BACKOFF`], or waiting out the backoff would also forget the failures behind it.
pub const BACKOFF_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Failed logins allowed per client network within [`WINDOW`], whatever the names.
pub const NETWORK_FAILURES: usize = 30;
/// Failed logins of one name from all networks within [`WINDOW`] after which the name is
/// limited, except from networks it recently logged in from.
pub const NAME_CEILING: usize = 300;
/// How long a network where a name logged in successfully stays exempt from the name's
/// ceiling.
pub const KNOWN_GOOD_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// Networks remembered as known-good per name (the most recent ones).
const KNOWN_GOOD_PER_NAME: usize = 8;
/// The sliding window of the counters.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most entries tracked per table at once.
pub const MAX_TRACKED: usize = 4096;

/// Where the limiter gets the time from; tests move it by hand.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A login attempt refused before verification: too many recent failures. Front doors tell
/// the client to wait this long (e.g. IMAP `NO [UNAVAILABLE]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins; try again in {} s", .0.as_secs().max(1))]
pub struct RetryAfter(pub Duration);

/// Failed-login counters shared by all connections of a front door.
#[derive(Debug)]
pub struct LoginLimiter<C: Clock = SystemClock> {
    clock: C,
    counters: Mutex<Counters>,
}

#[derive(Debug)]
struct Counters {
    /// Failures per (login name, client network): the backoff.
    by_pair: FailureTable<(String, IpAddr)>,
    /// Failures per client network, any name.
    by_network: FailureTable<IpAddr>,
    /// Failures per login name, from every network: the ceiling.
    by_name: FailureTable<String>,
    /// Networks each name recently logged in from.
    known_good: KnownGood,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            by_pair: FailureTable::new(BACKOFF_WINDOW),
            by_network: FailureTable::new(WINDOW),
            by_name: FailureTable::new(WINDOW),
            known_good: KnownGood::default(),
        }
    }
}

impl LoginLimiter<SystemClock> {
    /// A limiter on the system clock.
    pub fn new() -> Self {
        LoginLimiter::with_clock(SystemClock)
    }
}

impl Default for LoginLimiter<SystemClock> {
    fn default() -> Self {
        LoginLimiter::new()
    }
}

impl<C: Clock> LoginLimiter<C> {
    /// A limiter on `clock`.
    pub fn with_clock(clock: C) -> Self {
        LoginLimiter {
            clock,
            counters: Mutex::new(Counters::default()),
        }
    }

    /// Whether a login from `ip` as `login` may be tried now; if not, how long to wait.
    pub fn check(&self, ip: IpAddr, login: &str) -> Result<(), RetryAfter> {
        let now = self.clock.now();
        let (name, network) = (login_key(login), client_network(ip));
        let counters = self.counters();
        let ceiling = if counters.known_good.contains(&name, network, now) {
            None
        } else {
            counters.by_name.wait(&name, NAME_CEILING, now)
        };
        let waits = [
            counters.by_pair.backoff(&(name.clone(), network), now),
            counters.by_network.wait(&network, NETWORK_FAILURES, now),
            ceiling,
        ];
        match waits.into_iter().flatten().max() {
            Some(wait) => Err(RetryAfter(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed login (wrong password, unknown or disabled user alike).
    pub fn record_failure(&self, ip: IpAddr, login: &str) {
        let now = self.clock.now();
        let (name, network) = (login_key(login), client_network(ip));
        let mut counters = self.counters();
        counters
            .by_pair
            .record((name.clone(), network), PAIR_REMEMBERED, now);
        counters.by_network.record(network, NETWORK_FAILURES, now);
        counters.by_name.record(name, NAME_CEILING, now);
    }

    /// Counts a failed attempt against the client network only: one that got no verdict
    /// (the upstream was unavailable). It tells nothing about the name's password, so it must
    /// not slow the name down, but a client must not use us to hammer the upstream either.
    pub fn record_client_failure(&self, ip: IpAddr) {
        let now = self.clock.now();
        self.counters()
            .by_network
            .record(client_network(ip), NETWORK_FAILURES, now);
    }

    /// A successful login ends the name's backoff on this network and makes the network
    /// known-good for the name (exempt from the name's ceiling). The network's own count and
    /// the name's count elsewhere stay: one account an attacker owns must not reset the count
    /// of their guesses at others.
    pub fn record_success(&self, ip: IpAddr, login: &str) {
        let now = self.clock.now();
        let (name, network) = (login_key(login), client_network(ip));
        let mut counters = self.counters();
        counters.by_pair.forget(&(name.clone(), network));
        counters.known_good.insert(name, network, now);
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        // The counters stay consistent even if a holder panicked: every change is one step.
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The client network of `ip`: IPv4 addresses as they are (IPv4-mapped IPv6 included), IPv6
/// cut to its /64. Connection limits count by it too.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Failure times within a window per key, oldest first, at most a given number per key.
#[derive(Debug)]
struct FailureTable<K> {
    entries: HashMap<K, VecDeque<Instant>>,
    window: Duration,
}

impl<K: Eq + Hash + Clone> FailureTable<K> {
    fn new(window: Duration) -> Self {
        FailureTable {
            entries: HashMap::new(),
            window,
        }
    }

    /// Failures of `key` within the window, and the times kept.
    fn recent(&self, key: &K, now: Instant) -> Option<(usize, &VecDeque<Instant>)> {
        let times = self.entries.get(key)?;
        let recent = times
            .iter()
            .filter(|t| now.duration_since(**t) < self.window)
            .count();
        Some((recent, times))
    }

    /// How long until `key` may try again, if it is at `limit` failures within the window.
    fn wait(&self, key: &K, limit: usize, now: Instant) -> Option<Duration> {
        let (recent, times) = self.recent(key, now)?;
        if recent < limit {
            return None;
        }
        // At the limit, the oldest recent failure leaving the window frees one attempt.
        let oldest = times.get(times.len() - recent)?;
        Some(self.window.saturating_sub(now.duration_since(*oldest)))
    }

    /// How long until `key` may try again under exponential backoff: none for the first
    /// [`FREE_FAILURES`] failures within the window, then [`BACKOFF_BASE`] after the last
    /// failure, doubling with each one more, at most [`MAX_BACKOFF`].
    fn backoff(&self, key: &K, now: Instant) -> Option<Duration> {
        let (recent, times) = self.recent(key, now)?;
        let over = recent.checked_sub(FREE_FAILURES)?;
        let delay = u32::try_from(over)
            .ok()
            .and_then(|n| BACKOFF_BASE.checked_mul(1u32.checked_shl(n)?))
            .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF));
        let last = times.back()?;
        let wait = delay.saturating_sub(now.duration_since(*last));
        (!wait.is_zero()).then_some(wait)
    }

    fn record(&mut self, key: K, limit: usize, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_TRACKED {
            self.make_room(now);
        }
        let times = self.entries.entry(key).or_default();
        let window = self.window;
        times.retain(|t| now.duration_since(*t) < window);
        if times.len() >= limit {
            times.pop_front();
        }
        times.push_back(now);
    }

    fn forget(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Drops expired entries; if none were, the one whose last failure is oldest.
    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.entries
            .retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < window));
        if self.entries.len() < MAX_TRACKED {
            return;
        }
        let stalest = self
            .entries
            .iter()
            .min_by_key(|(_, times)| times.back().copied())
            .map(|(key, _)| key.clone());
        if let Some(key) = stalest {
            self.entries.remove(&key);
        }
    }
}

/// The networks each name logged in from successfully, most recent last, within
/// [`KNOWN_GOOD_FOR`]; at most [`KNOWN_GOOD_PER_NAME`] per name and [`MAX_TRACKED`] names.
#[derive(Debug, Default)]
struct KnownGood {
    names: HashMap<String, VecDeque<(IpAddr, Instant)>>,
}

impl KnownGood {
    fn contains(&self, name: &str, network: IpAddr, now: Instant) -> bool {
        self.names.get(name).is_some_and(|networks| {
            networks
                .iter()
                .any(|(n, at)| *n == network && now.duration_since(*at) < KNOWN_GOOD_FOR)
        })
    }

    fn insert(&mut self, name: String, network: IpAddr, now: Instant) {
        if !self.names.contains_key(&name) && self.names.len() >= MAX_TRACKED {
            self.names.retain(|_, networks| {
                networks
                    .back()
                    .is_some_and(|(_, at)| now.duration_since(*at) < KNOWN_GOOD_FOR)
            });
            if self.names.len() >= MAX_TRACKED {
                let stalest = self
                    .names
                    .iter()
                    .min_by_key(|(_, networks)| networks.back().map(|(_, at)| *at))
                    .map(|(name, _)| name.clone());
                if let Some(stalest) = stalest {
                    self.names.remove(&stalest);
                }
            }
        }
        let networks = self.names.entry(name).or_default();
        networks.retain(|(n, at)| *n != network && now.duration_since(*at) < KNOWN_GOOD_FOR);
        if networks.len() >= KNOWN_GOOD_PER_NAME {
            networks.pop_front();
        }
        networks.push_back((network, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves only when told.
    struct TestClock(Mutex<Instant>);

    impl TestClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn limiter() -> LoginLimiter<TestClock> {
        LoginLimiter::with_clock(TestClock(Mutex::new(Instant::now())))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Fails `login` from `from` until refused or `n` times; returns how many failed.
    fn fail(l: &LoginLimiter<TestClock>, from: &str, login: &str, n: usize) -> usize {
        for i in 0..n {
            if l.check(ip(from), login).is_err() {
                return i;
            }
            l.record_failure(ip(from), login);
        }
        n
    }

    #[test]
    fn a_network_guessing_a_name_backs_off_exponentially() {
        let l = limiter();
        assert_eq!(fail(&l, "10.0.0.2", "alice", 100), FREE_FAILURES);
        // From the same network, in any case: the first wait.
        assert_eq!(l.check(ip("10.0.0.2"), "ALICE"), Err(RetryAfter(BACKOFF_BASE)));
        // Each further failure doubles the wait, up to the cap.
        let mut expected = BACKOFF_BASE;
        for _ in 0..12 {
            let RetryAfter(wait) = l.check(ip("10.0.0.2"), "alice").unwrap_err();
            assert_eq!(wait, expected);
            l.clock.advance(wait);
            assert_eq!(l.check(ip("10.0.0.2"), "alice"), Ok(()));
            l.record_failure(ip("10.0.0.2"), "alice");
            expected = (expected * 2).min(MAX_BACKOFF);
        }
        assert_eq!(l.check(ip("10.0.0.2"), "alice"), Err(RetryAfter(MAX_BACKOFF)));
    }

    /// The defect: wrong passwords from one address locked the name out everywhere.
    #[test]
    fn failures_from_one_network_do_not_lock_the_name_out_elsewhere() {
        let l = limiter();
        for _ in 0..50 {
            l.record_failure(ip("10.0.0.2"), "alice");
        }
        assert!(l.check(ip("10.0.0.2"), "alice").is_err());
        assert_eq!(l.check(ip("10.0.0.1"), "alice"), Ok(()));
        assert_eq!(l.check(ip("192.0.2.7"), "alice"), Ok(()));
        // Another name from the guessing network is held by the network's own limit only.
        assert!(
            l.check(ip("10.0.0.2"), "bob").is_err(),
            "50 failures exceed the network limit"
        );
    }

    #[test]
    fn a_network_is_limited_across_names() {
        let l = limiter();
        for i in 0..NETWORK_FAILURES {
            assert_eq!(l.check(ip("10.0.0.1"), &format!("user{i}")), Ok(()));
            l.record_failure(ip("10.0.0.1"), &format!("user{i}"));
        }
        assert_eq!(l.check(ip("10.0.0.1"), "fresh"), Err(RetryAfter(WINDOW)));
        assert_eq!(l.check(ip("10.0.0.2"), "fresh"), Ok(()));
        // The same host over IPv4-mapped IPv6 counts as itself.
        assert!(l.check(ip("::ffff:10.0.0.1"), "fresh").is_err());
        l.clock.advance(WINDOW);
        assert_eq!(l.check(ip("10.0.0.1"), "fresh"), Ok(()));
    }

    #[test]
    fn attempts_without_a_verdict_count_for_the_network_only() {
        let l = limiter();
        for _ in 0..NETWORK_FAILURES {
            l.record_client_failure(ip("10.0.0.1"));
        }
        assert!(l.check(ip("10.0.0.1"), "alice").is_err());
        assert_eq!(l.check(ip("10.0.0.2"), "alice"), Ok(()));
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let l = limiter();
        for i in 0..FREE_FAILURES {
            l.record_failure(ip(&format!("2001:db8:1:2::{i:x}")), "alice");
        }
        assert!(l.check(ip("2001:db8:1:2:ffff::1"), "alice").is_err());
        assert_eq!(l.check(ip("2001:db8:1:3::1"), "alice"), Ok(()));
        for i in 0..NETWORK_FAILURES {
            l.record_failure(ip(&format!("2001:db8:1:2::{i:x}")), &format!("user{i}"));
        }
        assert!(l.check(ip("2001:db8:1:2:ffff::1"), "fresh").is_err());
        assert_eq!(l.check(ip("2001:db8:1:3::1"), "fresh"), Ok(()));
    }

    /// Distributed guessing (a few failures from each of many networks) reaches the name's
    /// ceiling; then only networks the name logged in from recently may still try.
    #[test]
    fn the_name_ceiling_spares_the_users_own_networks() {
        let l = limiter();
        l.record_success(ip("198.51.100.7"), "alice");
        for i in 0..NAME_CEILING {
            let from = IpAddr::from((u32::from_be_bytes([203, 0, 0, 0]) + i as u32).to_be_bytes());
            assert_eq!(l.check(from, "alice"), Ok(()), "attempt {i}");
            l.record_failure(from, "alice");
        }
        assert!(
            l.check(ip("192.0.2.99"), "alice").is_err(),
            "a new network is limited"
        );
        assert_eq!(
            l.check(ip("198.51.100.7"), "alice"),
            Ok(()),
            "the user's own is not"
        );
        assert_eq!(l.check(ip("192.0.2.99"), "bob"), Ok(()), "other names are not");
        // The ceiling's window passes; known-good does not last for ever either.
        l.clock.advance(KNOWN_GOOD_FOR);
        assert_eq!(l.check(ip("192.0.2.99"), "alice"), Ok(()));
        for i in 0..NAME_CEILING {
            let from = IpAddr::from((u32::from_be_bytes([203, 1, 0, 0]) + i as u32).to_be_bytes());
            l.record_failure(from, "alice");
        }
        assert!(l.check(ip("198.51.100.7"), "alice").is_err());
    }

    #[test]
    fn success_ends_the_backoff_on_its_network_but_not_the_networks_count() {
        let l = limiter();
        fail(&l, "10.0.0.1", "alice", FREE_FAILURES);
        assert!(l.check(ip("10.0.0.1"), "alice").is_err());
        l.record_success(ip("10.0.0.1"), "alice");
        assert_eq!(l.check(ip("10.0.0.1"), "alice"), Ok(()));
        for i in 0..NETWORK_FAILURES - FREE_FAILURES - 1 {
            l.record_failure(ip("10.0.0.1"), &format!("mallory{i}"));
        }
        l.record_success(ip("10.0.0.1"), "mallory0");
        l.record_failure(ip("10.0.0.1"), "mallory0");
        assert!(l.check(ip("10.0.0.1"), "someone-else").is_err());
    }

    #[test]
    fn memory_is_capped_and_the_stalest_entries_go_first() {
        let l = limiter();
        for _ in 0..FREE_FAILURES {
            l.record_failure(ip("10.0.0.1"), "oldest");
        }
        l.clock.advance(Duration::from_secs(1));
        for i in 0..MAX_TRACKED * 2 {
            let addr = IpAddr::from((i as u32 + (11 << 24)).to_be_bytes());
            l.record_failure(addr, &format!("user{i}"));
            l.record_success(addr, &format!("good{i}"));
        }
        let counters = l.counters();
        assert!(counters.by_name.entries.len() <= MAX_TRACKED);
        assert!(counters.by_pair.entries.len() <= MAX_TRACKED);
        assert!(counters.by_network.entries.len() <= MAX_TRACKED);
        assert!(counters.known_good.names.len() <= MAX_TRACKED);
        assert!(!counters.by_name.entries.contains_key("oldest"));
        assert!(counters
            .by_name
            .entries
            .contains_key(&format!("user{}", MAX_TRACKED * 2 - 1)));
        drop(counters);
        // Expired entries make room before live ones are dropped.
        l.clock.advance(WINDOW);
        l.record_failure(ip("10.0.0.1"), "newcomer");
        assert_eq!(l.counters().by_name.entries.len(), 1);
    }

    #[test]
    fn the_wait_reads_as_seconds() {
        assert_eq!(
            RetryAfter(Duration::from_millis(1500)).to_string(),
            "too many failed logins; try again in 1 s"
        );
    }
}
