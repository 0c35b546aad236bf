//! Connection slots in two pools, so clients that never log in cannot crowd out those who do
//! (issue #10, defect 7):
//!
//! - **waiting**: connections not logged in yet, at most `max_unauthenticated` in all and
//!   `max_unauthenticated_per_ip` per client network. When it is full, a new connection
//!   pushes the oldest waiting one out (as Dovecot's login processes do): an idle flood
//!   must keep renewing itself faster than a user logs in, and every flooding network is
//!   capped. Waiting connections also end after `login_timeout` (counted from connect).
//! - **authenticated**: at most `max_connections`. A connection moves there on login; if it
//!   is full, the login is answered BYE and NO and the connection closes (`command/login.rs`).
//!
//! Every connection of a client network, in either pool, counts against
//! `max_connections_per_ip`. A client network is what the login limiter counts by: an IPv4
//! address or an IPv6 /64 ([`client_network`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use archive_core::access::limiter::client_network;
use tokio::sync::Notify;

use crate::config::ImapLimits;

/// The two pools of one server.
pub(crate) struct Pools {
    limits: ImapLimits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Ids grow with time: the first entry is the oldest waiting connection.
    next_id: u64,
    /// Waiting connections: id → (network, how to push it out).
    waiting: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
    authenticated: usize,
    networks: HashMap<IpAddr, NetworkCount>,
}

#[derive(Clone, Copy, Default)]
struct NetworkCount {
    /// Connections in either pool.
    all: usize,
    /// Of those, waiting ones.
    waiting: usize,
}

impl State {
    fn count(&mut self, network: IpAddr) -> &mut NetworkCount {
        self.networks.entry(network).or_default()
    }

    /// Takes `network`'s count down by one connection (a waiting one if `waiting`).
    fn release(&mut self, network: IpAddr, waiting: bool) {
        if let Some(c) = self.networks.get_mut(&network) {
            c.all = c.all.saturating_sub(1);
            if waiting {
                c.waiting = c.waiting.saturating_sub(1);
            }
            if c.all == 0 {
                self.networks.remove(&network);
            }
        }
    }
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The client network has `max_connections_per_ip` connections.
    Network,
    /// The client network has `max_unauthenticated_per_ip` connections waiting.
    NetworkWaiting,
}

/// One connection's place; dropping it (the connection ends) frees it.
pub(crate) struct Slot {
    pools: Arc<Pools>,
    id: u64,
    network: IpAddr,
    authenticated: bool,
    pushed_out: Arc<Notify>,
}

impl Pools {
    pub fn new(limits: ImapLimits) -> Arc<Pools> {
        Arc::new(Pools {
            limits,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change below is complete before the lock is released.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections in each pool now.
    pub fn sessions(&self) -> crate::server::Sessions {
        let state = self.state();
        crate::server::Sessions {
            waiting: state.waiting.len(),
            authenticated: state.authenticated,
        }
    }

    /// A waiting place for a new connection from `ip`, pushing the oldest waiting connection
    /// out if the pool is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let network = client_network(ip);
        let l = &self.limits;
        let mut state = self.state();
        let mine = state.networks.get(&network).copied().unwrap_or_default();
        if mine.all >= l.max_connections_per_ip {
            return Err(Refused::Network);
        }
        if mine.waiting >= l.max_unauthenticated_per_ip {
            return Err(Refused::NetworkWaiting);
        }
        while state.waiting.len() >= l.max_unauthenticated {
            let Some((_, (oldest, notify))) = state.waiting.pop_first() else {
                break;
            };
            state.release(oldest, true);
            notify.notify_one();
        }
        let id = state.next_id;
        state.next_id += 1;
        let pushed_out = Arc::new(Notify::new());
        state.waiting.insert(id, (network, Arc::clone(&pushed_out)));
        let count = state.count(network);
        count.all += 1;
        count.waiting += 1;
        Ok(Slot {
            pools: Arc::clone(self),
            id,
            network,
            authenticated: false,
            pushed_out,
        })
    }
}

impl Slot {
    /// Moves the connection to the authenticated pool; false if that pool is full or the
    /// connection was pushed out meanwhile (it then stays as it was).
    pub fn authenticate(&mut self) -> bool {
        if self.authenticated {
            return true;
        }
        let mut state = self.pools.state();
        if state.authenticated >= self.pools.limits.max_connections || !state.waiting.contains_key(&self.id) {
            return false;
        }
        state.waiting.remove(&self.id);
        state.authenticated += 1;
        let count = state.count(self.network);
        count.waiting = count.waiting.saturating_sub(1);
        self.authenticated = true;
        true
    }

    /// Resolves when a newer connection pushed this waiting one out of the pool.
    pub fn pushed_out(&self) -> Arc<Notify> {
        Arc::clone(&self.pushed_out)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.pools.state();
        if self.authenticated {
            state.authenticated = state.authenticated.saturating_sub(1);
            state.release(self.network, false);
        } else if state.waiting.remove(&self.id).is_some() {
            state.release(self.network, true);
        }
        // Otherwise it was pushed out, and its count went then.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools(
        max_waiting: usize,
        per_network_waiting: usize,
        per_network: usize,
        authenticated: usize,
    ) -> Arc<Pools> {
        Pools::new(ImapLimits {
            max_unauthenticated: max_waiting,
            max_unauthenticated_per_ip: per_network_waiting,
            max_connections_per_ip: per_network,
            max_connections: authenticated,
            ..ImapLimits::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_full_waiting_pool_pushes_out_its_oldest_and_logged_in_ones_stay() {
        let p = pools(3, 2, 10, 10);
        let mut user = p.admit(ip("10.0.0.1")).unwrap();
        assert!(user.authenticate());
        let flood: Vec<Slot> = (2..6)
            .map(|i| p.admit(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        // Four admitted into three places: the first was pushed out (its notify is stored).
        let first = flood[0].pushed_out();
        tokio_test_ready(&first);
        assert_eq!(p.state().waiting.len(), 3);
        // A new connection still gets in, and can log in.
        let mut late = p.admit(ip("10.0.0.1")).unwrap();
        assert!(late.authenticate());
        drop(flood);
        let state = p.state();
        assert!(state.waiting.is_empty());
        assert_eq!(state.authenticated, 2);
        assert_eq!(
            state.networks.len(),
            1,
            "only 10.0.0.1's two sessions are counted"
        );
        drop(state);
        drop((user, late));
        assert!(p.state().networks.is_empty());
    }

    /// Whether a notify already holds a permit.
    fn tokio_test_ready(notify: &Notify) {
        use std::future::Future;
        let fut = notify.notified();
        let mut fut = std::pin::pin!(fut);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(fut.as_mut().poll(&mut cx).is_ready(), "not pushed out");
    }

    #[test]
    fn networks_are_capped_ipv6_per_64() {
        let p = pools(100, 2, 3, 100);
        let _a = p.admit(ip("2001:db8:0:1::1")).unwrap();
        let mut b = p.admit(ip("2001:db8:0:1::2")).unwrap();
        assert_eq!(
            p.admit(ip("2001:db8:0:1:ffff::3")).err(),
            Some(Refused::NetworkWaiting)
        );
        assert!(b.authenticate());
        let _c = p.admit(ip("2001:db8:0:1::4")).unwrap();
        assert_eq!(p.admit(ip("2001:db8:0:1::5")).err(), Some(Refused::Network));
        assert!(p.admit(ip("2001:db8:0:2::1")).is_ok(), "another /64");
    }

    #[test]
    fn a_full_authenticated_pool_refuses_the_move_and_keeps_the_connection_waiting() {
        let p = pools(10, 10, 10, 1);
        let mut first = p.admit(ip("10.0.0.1")).unwrap();
        let mut second = p.admit(ip("10.0.0.2")).unwrap();
        assert!(first.authenticate());
        assert!(!second.authenticate());
        assert_eq!(p.state().waiting.len(), 1);
        drop(first);
        assert!(second.authenticate());
    }
}
