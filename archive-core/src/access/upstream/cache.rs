//! Recently verified pass-through logins, so a mail client that opens several connections
//! (most do) does not cost the upstream a login each time. In memory only, and never the
//! password: an Argon2id hash of it with a fresh salt, as for local users.
//!
//! A cached entry only ever *accepts* the password it was made from, for at most the TTL after
//! the upstream accepted it. Any other password goes to the upstream, so a changed password
//! works at once; a rejection there removes the entry, so an old password stops working at
//! once too. What the cache can do is keep accepting an old password for up to the TTL after
//! it was changed or the account closed upstream, without asking: hence a short TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::access::password::{hash_unchecked, verify_password};

/// Most logins remembered at once; when full, expired entries go first, then the oldest.
pub const MAX_ENTRIES: usize = 1024;

/// Logins the upstream accepted recently, by the login exactly as sent to it.
#[derive(Debug)]
pub struct VerifiedLogins {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    password_hash: String,
    verified: Instant,
}

impl VerifiedLogins {
    /// A cache keeping entries for `ttl` (zero: remembers nothing).
    pub fn new(ttl: Duration) -> VerifiedLogins {
        VerifiedLogins {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the upstream accepted exactly this login and password less than the TTL before
    /// `now`. Costs one Argon2id verification when the login is cached.
    pub fn accepts(&self, login: &str, password: &str, now: Instant) -> bool {
        let hash = {
            let entries = self.entries();
            match entries.get(login) {
                Some(e) if now.saturating_duration_since(e.verified) < self.ttl => e.password_hash.clone(),
                _ => return false,
            }
        };
        // Verified outside the lock: it takes tens of milliseconds.
        verify_password(password, &hash)
    }

    /// Remembers that the upstream accepted `login`/`password` at `now`.
    pub fn remember(&self, login: &str, password: &str, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(password_hash) = hash_unchecked(password) else {
            // No randomness for a salt: simply do not cache.
            return;
        };
        let mut entries = self.entries();
        if !entries.contains_key(login) && entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| now.saturating_duration_since(e.verified) < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.verified)
                    .map(|(login, _)| login.clone());
                if let Some(login) = oldest {
                    entries.remove(&login);
                }
            }
        }
        entries.insert(
            login.to_string(),
            Entry {
                password_hash,
                verified: now,
            },
        );
    }

    /// Forgets `login` (the upstream rejected it: the cached password is no longer right).
    pub fn forget(&self, login: &str) {
        self.entries().remove(login);
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Every change is one step, so the map stays consistent even if a holder panicked.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(300);

    #[test]
    fn only_the_same_password_within_the_ttl_is_accepted() {
        let cache = VerifiedLogins::new(TTL);
        let t0 = Instant::now();
        assert!(!cache.accepts("alice@example.com", "secret", t0));
        cache.remember("alice@example.com", "secret", t0);
        assert!(cache.accepts("alice@example.com", "secret", t0 + TTL / 2));
        assert!(!cache.accepts("alice@example.com", "Secret", t0));
        assert!(
            !cache.accepts("Alice@example.com", "secret", t0),
            "exactly as sent"
        );
        assert!(!cache.accepts("alice@example.com", "secret", t0 + TTL));
        cache.remember("alice@example.com", "secret", t0 + TTL);
        assert!(cache.accepts("alice@example.com", "secret", t0 + TTL));
        cache.forget("alice@example.com");
        assert!(!cache.accepts("alice@example.com", "secret", t0 + TTL));
    }

    #[test]
    fn the_password_is_kept_only_as_an_argon2id_hash() {
        let cache = VerifiedLogins::new(TTL);
        cache.remember("alice@example.com", "secret", Instant::now());
        let entries = cache.entries();
        let hash = &entries["alice@example.com"].password_hash;
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("secret"));
    }

    #[test]
    fn a_zero_ttl_remembers_nothing() {
        let cache = VerifiedLogins::new(Duration::ZERO);
        let now = Instant::now();
        cache.remember("alice@example.com", "secret", now);
        assert!(!cache.accepts("alice@example.com", "secret", now));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn size_is_bounded_expired_then_oldest_go_first() {
        let cache = VerifiedLogins::new(TTL);
        let t0 = Instant::now();
        // Fill without paying for MAX_ENTRIES Argon2id hashes: the entries are what counts.
        {
            let mut entries = cache.entries();
            for i in 0..MAX_ENTRIES {
                entries.insert(
                    format!("user{i}@example.com"),
                    Entry {
                        password_hash: String::new(),
                        verified: t0 + Duration::from_millis(i as u64),
                    },
                );
            }
        }
        let full = t0 + Duration::from_millis(MAX_ENTRIES as u64);
        cache.remember("new@example.com", "secret", full);
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert!(
            !cache.entries().contains_key("user0@example.com"),
            "the oldest went"
        );
        assert!(cache.entries().contains_key("user1@example.com"));
        // Much later, every old entry has expired: they all make room at once.
        let later = t0 + TTL * 10;
        cache.remember("newer@example.com", "secret", later);
        assert_eq!(cache.len(), 1);
        assert!(cache.accepts("newer@example.com", "secret", later));
    }
}
