//! Message contents read lately, decompressed and checked, shared by every reader. Clients
//! read a message several times in a row (BODYSTRUCTURE, then its parts; headers, then the
//! body; the same mailbox on a second device), and a stored message never changes, so an
//! entry stays right forever. Dovecot gets the same from the page cache; our payloads are
//! compressed, so each read would otherwise pay for decompression and the blake3 check
//! again. Entries are keyed by the record read (a message, or an arrival, which shares its
//! message's bytes) and keep its receive time, so a repeated read of a message a view has
//! checked already needs neither the index nor the log. Bounded in bytes; messages larger
//! than an eighth of the budget are not kept.

use std::sync::{Arc, Mutex};

/// Shards, so that concurrent readers rarely wait for each other.
const SHARDS: usize = 8;

/// Bytes counted per entry on top of its content (map slot, list links, `Arc` header).
const ENTRY_OVERHEAD: usize = 96;

pub(crate) struct ReadCache {
    shards: Vec<Mutex<Shard>>,
    /// Bytes one shard may hold.
    shard_budget: usize,
    /// The largest content kept.
    largest: usize,
}

struct Shard {
    entries: lru::LruCache<u64, Cached>,
    held: usize,
}

/// A record's receive time and its message's content.
#[derive(Clone)]
pub(crate) struct Cached {
    pub time_us: i64,
    pub content: Arc<[u8]>,
}

impl ReadCache {
    /// A cache of at most `budget` bytes (0: none).
    pub fn new(budget: usize) -> ReadCache {
        ReadCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: lru::LruCache::unbounded(),
                        held: 0,
                    })
                })
                .collect(),
            shard_budget: budget / SHARDS,
            largest: budget / 8,
        }
    }

    fn shard(&self, seq: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(seq % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// What is kept for record `seq`, if anything.
    pub fn get(&self, seq: u64) -> Option<Cached> {
        self.shard(seq).entries.get(&seq).cloned()
    }

    /// Keeps the receive time of record `seq` and its message's (checked) content, evicting
    /// the least recently read entries beyond the budget. An arrival's entry shares its
    /// message's bytes but is counted in full (the budget errs on the safe side).
    pub fn insert(&self, seq: u64, time_us: i64, content: Arc<[u8]>) {
        if content.len() > self.largest {
            return;
        }
        let cost = content.len() + ENTRY_OVERHEAD;
        let mut shard = self.shard(seq);
        if let Some(old) = shard.entries.put(seq, Cached { time_us, content }) {
            shard.held -= old.content.len() + ENTRY_OVERHEAD;
        }
        shard.held += cost;
        while shard.held > self.shard_budget {
            match shard.entries.pop_lru() {
                Some((_, evicted)) => shard.held -= evicted.content.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_fits_and_forgets_the_least_recently_read() {
        let cache = ReadCache::new(SHARDS * (3 * (100 + ENTRY_OVERHEAD)));
        // Seqs 0, 8, 16, 24 share a shard that holds three entries of 100 bytes.
        for seq in [0, 8, 16] {
            cache.insert(seq, seq as i64, Arc::from(&[seq as u8; 100][..]));
        }
        assert!(cache.get(0).is_some(), "read: now the most recent");
        cache.insert(24, 24, Arc::from(&[24; 100][..]));
        assert!(cache.get(8).is_none(), "the least recently read went");
        let kept = cache.get(0).unwrap();
        assert_eq!((kept.time_us, &*kept.content), (0, &[0u8; 100][..]));
        assert!(cache.get(16).is_some() && cache.get(24).is_some());
        // Larger than an eighth of the budget: never kept.
        let big = vec![1u8; cache.largest + 1];
        cache.insert(32, 32, Arc::from(big));
        assert!(cache.get(32).is_none());
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let cache = ReadCache::new(0);
        cache.insert(1, 1, Arc::from(&b"x"[..]));
        assert!(cache.get(1).is_none());
    }
}
