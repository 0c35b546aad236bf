//! ENVELOPEs already computed, shared by every session. A client's first sync asks for the
//! ENVELOPE of every message; reconnects, other devices and other clients of the same user ask
//! again. Stored messages never change, so an ENVELOPE computed once (from the stored bytes,
//! by `mime`) stays right forever; keeping it spares decompressing and parsing the message
//! again. Dovecot keeps the same in its index cache file; this one lives in memory, bounded,
//! and is rebuilt as clients ask after a restart.
//!
//! Keyed by message record seq: only a session that found the message in its view asks.
//! Entries are a compact byte encoding (~300 bytes for typical mail), not the imap-types tree
//! (~1 KiB of small allocations).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use imap_next::imap_types::core::NString;
use imap_next::imap_types::envelope::{Address, Envelope};

use crate::mime::nstring;

/// Shards of the map: sessions fetching at once rarely wait for each other.
const SHARDS: usize = 16;

/// Bookkeeping per entry on top of its bytes (map slot, `Arc` header), for the budget.
const ENTRY_OVERHEAD: usize = 64;

/// Marks a NIL string in the encoding.
const NIL: u32 = u32::MAX;

/// ENVELOPEs by message record seq, within a memory budget.
pub(crate) struct EnvelopeCache {
    shards: Vec<Mutex<Shard>>,
    /// Bytes each shard may hold (entries plus [`ENTRY_OVERHEAD`] each).
    shard_budget: usize,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<u64, Arc<[u8]>>,
    held: usize,
}

impl EnvelopeCache {
    /// A cache holding at most `budget` bytes, counting [`ENTRY_OVERHEAD`] per entry.
    pub fn new(budget: usize) -> EnvelopeCache {
        EnvelopeCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_budget: budget / SHARDS,
        }
    }

    fn shard(&self, seq: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(seq % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The ENVELOPE of message record `seq`, if known.
    pub fn get(&self, seq: u64) -> Option<Envelope<'static>> {
        let bytes = self.shard(seq).entries.get(&seq).cloned()?;
        decode(&bytes)
    }

    /// Remembers the ENVELOPE of message record `seq`. A full shard is emptied first: cheap,
    /// and entries are only a re-parse away.
    pub fn insert(&self, seq: u64, envelope: &Envelope<'_>) {
        let bytes: Arc<[u8]> = encode(envelope).into();
        let cost = bytes.len() + ENTRY_OVERHEAD;
        if cost > self.shard_budget {
            return;
        }
        let mut shard = self.shard(seq);
        if shard.held + cost > self.shard_budget {
            shard.entries.clear();
            shard.held = 0;
        }
        if let Some(old) = shard.entries.insert(seq, bytes) {
            shard.held -= old.len() + ENTRY_OVERHEAD;
        }
        shard.held += cost;
    }

    /// Bytes held, for tests.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).held)
            .sum()
    }
}

fn encode(e: &Envelope<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    put_string(&mut out, &e.date);
    put_string(&mut out, &e.subject);
    for list in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for a in list {
            for s in [&a.name, &a.adl, &a.mailbox, &a.host] {
                put_string(&mut out, s);
            }
        }
    }
    put_string(&mut out, &e.in_reply_to);
    put_string(&mut out, &e.message_id);
    out
}

fn put_string(out: &mut Vec<u8>, s: &NString<'_>) {
    match &s.0 {
        None => out.extend_from_slice(&NIL.to_le_bytes()),
        Some(s) => {
            let b: &[u8] = s.as_ref();
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
    }
}

fn decode(bytes: &[u8]) -> Option<Envelope<'static>> {
    let mut r = Reader(bytes);
    let date = r.string()?;
    let subject = r.string()?;
    let mut lists = Vec::with_capacity(6);
    for _ in 0..6 {
        let n = r.u32()? as usize;
        let mut list = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            list.push(Address {
                name: r.string()?,
                adl: r.string()?,
                mailbox: r.string()?,
                host: r.string()?,
            });
        }
        lists.push(list);
    }
    let in_reply_to = r.string()?;
    let message_id = r.string()?;
    let mut lists = lists.into_iter();
    Some(Envelope {
        date,
        subject,
        from: lists.next()?,
        sender: lists.next()?,
        reply_to: lists.next()?,
        to: lists.next()?,
        cc: lists.next()?,
        bcc: lists.next()?,
        in_reply_to,
        message_id,
    })
}

struct Reader<'b>(&'b [u8]);

impl Reader<'_> {
    fn u32(&mut self) -> Option<u32> {
        let (n, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_le_bytes(*n))
    }

    fn string(&mut self) -> Option<NString<'static>> {
        let len = self.u32()?;
        if len == NIL {
            return Some(NString(None));
        }
        let (s, rest) = self.0.split_at_checked(len as usize)?;
        self.0 = rest;
        // The bytes came out of a valid string: they make the same string again.
        Some(nstring(Some(s.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::Parsed;

    #[test]
    fn envelopes_come_back_exactly_and_the_budget_holds() {
        let raw = b"Date: Tue, 1 Jan 2030 10:00:00 +0100\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= \"quoted\" and {braces}\r\n\
From: \"Zoe Q\" <zoe@example.org>, bob@example.com\r\n\
To: group: a@b.c, d@e.f;, x@y.z\r\nCc: \r\nMessage-ID: <a@b>\r\n\r\nbody\r\n";
        let envelope = Parsed::new(raw).envelope();
        let empty = Parsed::new(b"\r\n").envelope();
        let cache = EnvelopeCache::new(1 << 20);
        cache.insert(7, &envelope);
        cache.insert(8, &empty);
        assert_eq!(cache.get(7), Some(envelope.clone()));
        assert_eq!(cache.get(8), Some(empty));
        assert_eq!(cache.get(9), None);

        let budget = 10 * SHARDS * (encode(&envelope).len() + ENTRY_OVERHEAD);
        let small = EnvelopeCache::new(budget);
        // Every seq in one shard, and spread over all of them.
        for seq in (0..1000).map(|i| i * SHARDS as u64).chain(0..1000) {
            small.insert(seq, &envelope);
            assert!(small.held() <= budget, "{seq}: {}", small.held());
        }
        assert!((0..1000).any(|seq| small.get(seq).is_some()));
        assert!(
            decode(&encode(&envelope)[..10]).is_none(),
            "a cut entry is refused"
        );
    }
}
