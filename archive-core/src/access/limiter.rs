//! Failed-login rate limiting for the front doors: a sliding window of failures per client
//! address and per login name. A front door asks [`LoginLimiter::check`] before it verifies a
//! password (so a limited client costs no Argon2 work) and reports the outcome afterwards.
//!
//! Limits: [`USER_FAILURES`] failures per login name and [`IP_FAILURES`] per client address
//! within [`WINDOW`]. A client address is an IPv4 address or an IPv6 /64 (one host usually holds
//! a whole /64, so counting single IPv6 addresses would limit nothing).
//!
//! Memory is bounded: at most [`MAX_TRACKED`] names and as many addresses, each with at most
//! its limit of timestamps (a few MiB at worst). When full, expired entries go first, then the
//! entry whose last failure is oldest. An attacker who floods the table with other names can
//! push a name out early; the per-address limit still holds them back.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::names::login_key;

/// Failed logins allowed per login name within [`WINDOW`].
pub const USER_FAILURES: usize = 10;
/// Failed logins allowed per client address within [`WINDOW`].
pub const IP_FAILURES: usize = 30;
/// The sliding window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most names (and, separately, addresses) tracked at once.
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

#[derive(Debug, Default)]
struct Counters {
    by_user: FailureTable<String>,
    by_ip: FailureTable<IpAddr>,
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
        let counters = self.counters();
        let waits = [
            counters.by_user.wait(&login_key(login), USER_FAILURES, now),
            counters.by_ip.wait(&client_key(ip), IP_FAILURES, now),
        ];
        match waits.into_iter().flatten().max() {
            Some(wait) => Err(RetryAfter(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed login (wrong password, unknown or disabled user alike).
    pub fn record_failure(&self, ip: IpAddr, login: &str) {
        let now = self.clock.now();
        let mut counters = self.counters();
        counters.by_user.record(login_key(login), USER_FAILURES, now);
        counters.by_ip.record(client_key(ip), IP_FAILURES, now);
    }

    /// Counts a failed attempt against the client address only: one that got no verdict
    /// (the upstream was unavailable). It tells nothing about the name's password, so it must
    /// not lock the name out, but a client must not use us to hammer the upstream either.
    pub fn record_client_failure(&self, ip: IpAddr) {
        let now = self.clock.now();
        self.counters().by_ip.record(client_key(ip), IP_FAILURES, now);
    }

    /// A successful login clears the name's failures, not the address's: one account an
    /// attacker owns must not reset the count of their guesses at others.
    pub fn record_success(&self, _ip: IpAddr, login: &str) {
        self.counters().by_user.forget(&login_key(login));
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        // The counters stay consistent even if a holder panicked: every change is one step.
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// IPv4 addresses as they are (IPv4-mapped IPv6 included); IPv6 cut to its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Recent failure times per key, oldest first, at most `limit` per key.
#[derive(Debug)]
struct FailureTable<K> {
    entries: HashMap<K, VecDeque<Instant>>,
}

impl<K> Default for FailureTable<K> {
    fn default() -> Self {
        FailureTable {
            entries: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> FailureTable<K> {
    /// How long until `key` may try again, if it is at its limit.
    fn wait(&self, key: &K, limit: usize, now: Instant) -> Option<Duration> {
        let times = self.entries.get(key)?;
        let recent = times.iter().filter(|t| now.duration_since(**t) < WINDOW).count();
        if recent < limit {
            return None;
        }
        // At the limit, the oldest recent failure leaving the window frees one attempt.
        let oldest = times.get(times.len() - recent)?;
        Some(WINDOW.saturating_sub(now.duration_since(*oldest)))
    }

    fn record(&mut self, key: K, limit: usize, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_TRACKED {
            self.make_room(now);
        }
        let times = self.entries.entry(key).or_default();
        times.retain(|t| now.duration_since(*t) < WINDOW);
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
        self.entries
            .retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
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

    #[test]
    fn a_name_is_limited_within_the_window_and_free_after_it() {
        let l = limiter();
        for i in 0..USER_FAILURES {
            assert_eq!(l.check(ip("10.0.0.1"), "alice"), Ok(()), "attempt {i}");
            l.record_failure(ip("10.0.0.1"), "alice");
            l.clock.advance(Duration::from_secs(10));
        }
        // From any address, in any case.
        let RetryAfter(wait) = l.check(ip("192.0.2.7"), "ALICE").unwrap_err();
        assert_eq!(wait, WINDOW - Duration::from_secs(10 * USER_FAILURES as u64));
        assert_eq!(l.check(ip("10.0.0.1"), "bob"), Ok(()));
        // The oldest failure leaves the window: one more attempt, then limited again.
        l.clock.advance(wait);
        assert_eq!(l.check(ip("10.0.0.1"), "alice"), Ok(()));
        l.record_failure(ip("10.0.0.1"), "alice");
        assert!(l.check(ip("10.0.0.1"), "alice").is_err());
        l.clock.advance(WINDOW);
        assert_eq!(l.check(ip("10.0.0.1"), "alice"), Ok(()));
    }

    #[test]
    fn an_address_is_limited_across_names() {
        let l = limiter();
        for i in 0..IP_FAILURES {
            assert_eq!(l.check(ip("10.0.0.1"), &format!("user{i}")), Ok(()));
            l.record_failure(ip("10.0.0.1"), &format!("user{i}"));
        }
        assert_eq!(l.check(ip("10.0.0.1"), "fresh"), Err(RetryAfter(WINDOW)));
        assert_eq!(l.check(ip("10.0.0.2"), "fresh"), Ok(()));
        // The same host over IPv4-mapped IPv6 counts as itself.
        assert!(l.check(ip("::ffff:10.0.0.1"), "fresh").is_err());
    }

    #[test]
    fn attempts_without_a_verdict_count_for_the_address_only() {
        let l = limiter();
        for _ in 0..IP_FAILURES {
            l.record_client_failure(ip("10.0.0.1"));
        }
        assert!(l.check(ip("10.0.0.1"), "alice").is_err());
        assert_eq!(l.check(ip("10.0.0.2"), "alice"), Ok(()));
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let l = limiter();
        for i in 0..IP_FAILURES {
            l.record_failure(ip(&format!("2001:db8:1:2::{i:x}")), &format!("user{i}"));
        }
        assert!(l.check(ip("2001:db8:1:2:ffff::1"), "fresh").is_err());
        assert_eq!(l.check(ip("2001:db8:1:3::1"), "fresh"), Ok(()));
    }

    #[test]
    fn success_clears_the_name_but_not_the_address() {
        let l = limiter();
        for i in 0..USER_FAILURES {
            l.record_failure(ip(&format!("10.0.1.{i}")), "alice");
        }
        for _ in 0..IP_FAILURES - 1 {
            l.record_failure(ip("10.0.0.1"), "mallory");
        }
        assert!(l.check(ip("10.0.0.99"), "alice").is_err());
        l.record_success(ip("10.0.0.99"), "alice");
        assert_eq!(l.check(ip("10.0.0.99"), "alice"), Ok(()));
        l.record_success(ip("10.0.0.1"), "mallory");
        l.record_failure(ip("10.0.0.1"), "mallory");
        assert!(l.check(ip("10.0.0.1"), "someone-else").is_err());
    }

    #[test]
    fn memory_is_capped_and_the_stalest_entries_go_first() {
        let l = limiter();
        l.record_failure(ip("10.0.0.1"), "oldest");
        for _ in 0..USER_FAILURES - 1 {
            l.record_failure(ip("10.0.0.1"), "oldest");
        }
        l.clock.advance(Duration::from_secs(1));
        for i in 0..MAX_TRACKED * 2 {
            let addr = IpAddr::from((i as u32 + (11 << 24)).to_be_bytes());
            l.record_failure(addr, &format!("user{i}"));
        }
        let counters = l.counters();
        assert!(counters.by_user.entries.len() <= MAX_TRACKED);
        assert!(counters.by_ip.entries.len() <= MAX_TRACKED);
        assert!(!counters.by_user.entries.contains_key("oldest"));
        assert!(counters
            .by_user
            .entries
            .contains_key(&format!("user{}", MAX_TRACKED * 2 - 1)));
        assert!(counters
            .by_user
            .entries
            .values()
            .all(|t| t.len() <= USER_FAILURES));
        drop(counters);
        // Expired entries make room before live ones are dropped.
        l.clock.advance(WINDOW);
        l.record_failure(ip("10.0.0.1"), "newcomer");
        assert_eq!(l.counters().by_user.entries.len(), 1);
    }

    #[test]
    fn the_wait_reads_as_seconds() {
        assert_eq!(
            RetryAfter(Duration::from_millis(1500)).to_string(),
            "too many failed logins; try again in 1 s"
        );
    }
}
