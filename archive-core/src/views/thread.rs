//! The conversation of a message, as a principal may see it: what the web's message page lists
//! under "thread". Found in one bounded step, never by walking a chain of replies:
//!
//! - the message's own Message-ID and the ids its In-Reply-To and References name (at most
//!   [`MAX_THREAD_IDS`]);
//! - the messages holding those ids as their Message-ID (the key-value index's Message-ID
//!   table: ancestors and copies), each checked against the principal's scope in the search
//!   index ([`Store::hit_for`], the check [`Store::message_for`] starts with);
//! - the messages naming one of those ids in their own In-Reply-To or References (replies and
//!   siblings): a `msgid:` search run as the principal, so the scope is part of the query.
//!
//! A message outside the scope is never listed and never counted. At most [`MAX_THREAD`]
//! messages come back, oldest first.

use std::collections::BTreeSet;

use mail_parser::{HeaderValue, MessageParser};

use super::ScopedMessage;
use crate::search::query::{Node, TextField, Value};
use crate::search::{Hit, Principal, Query, SearchOptions, Sort};
use crate::{Result, Store};

/// Most messages a thread lists (besides the message itself).
pub const MAX_THREAD: usize = 50;
/// Most Message-IDs of one message looked up (its own, In-Reply-To, the newest References).
pub const MAX_THREAD_IDS: usize = 20;
/// Longest Message-ID looked up (RFC 5322 lines are at most 998 characters).
const MAX_ID_BYTES: usize = 998;

impl Store {
    /// The other messages of `seq`'s conversation that `principal` may see, oldest first, at
    /// most [`MAX_THREAD`]. `seq` itself is read with [`Store::message_for`]'s checks first:
    /// a seq outside the scope is [`crate::Error::NoSuchRecord`], as there.
    pub fn thread_for(&self, principal: &Principal, seq: u64) -> Result<Vec<Hit>> {
        let message = self.message_for(principal, seq)?;
        self.thread_of(principal, &message)
    }

    /// [`Store::thread_for`] of a message already read for `principal` with
    /// [`Store::message_for`] (a page that shows it too need not read it again).
    pub fn thread_of(&self, principal: &Principal, message: &ScopedMessage) -> Result<Vec<Hit>> {
        let seq = message.hit.seq;
        let ids = thread_ids(&message.raw);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut hits: Vec<Hit> = Vec::new();
        let mut seen = BTreeSet::from([seq]);
        // Replies and siblings: the scope is part of the index query.
        let query = Query::from_node(Node::Or(
            ids.iter()
                .map(|id| Node::Field(TextField::MsgId, Value::Word(id.clone())))
                .collect(),
        ))
        .map_err(|e| crate::Error::Rejected(e.to_string()))?;
        let options = SearchOptions {
            sort: Sort::Oldest,
            limit: MAX_THREAD + 1,
            cursor: None,
            snippets: false,
            facets: false,
            count_limit: Some(0),
        };
        for hit in self.search(principal, &query, &options)?.hits {
            if seen.insert(hit.seq) {
                hits.push(hit);
            }
        }
        // Ancestors by their own Message-ID, each only if the principal may see it.
        'ids: for id in &ids {
            for candidate in self.by_message_id(id)? {
                if hits.len() >= 2 * MAX_THREAD {
                    break 'ids;
                }
                if !seen.insert(candidate) {
                    continue;
                }
                if let Some(hit) = self.hit_for(principal, candidate)? {
                    hits.push(hit);
                }
            }
        }
        hits.sort_by_key(|h| (h.date, h.seq));
        hits.truncate(MAX_THREAD);
        Ok(hits)
    }
}

/// The ids that tie `raw` to its conversation: its Message-ID, In-Reply-To, and the newest
/// References, without angle brackets, deduplicated, at most [`MAX_THREAD_IDS`].
pub fn thread_ids(raw: &[u8]) -> Vec<String> {
    let Some(headers) = MessageParser::new().parse_headers(raw) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = Vec::new();
    let mut push = |id: &str| {
        let id = id.trim().trim_start_matches('<').trim_end_matches('>').trim();
        if !id.is_empty()
            && id.len() <= MAX_ID_BYTES
            && ids.len() < MAX_THREAD_IDS
            && !ids.iter().any(|known| known.eq_ignore_ascii_case(id))
        {
            ids.push(id.to_string());
        }
    };
    if let Some(own) = headers.message_id() {
        push(own);
    }
    let listed = |value: &HeaderValue<'_>| -> Vec<String> {
        match value {
            HeaderValue::Text(t) => vec![t.to_string()],
            HeaderValue::TextList(list) => list.iter().map(|t| t.to_string()).collect(),
            _ => Vec::new(),
        }
    };
    for id in listed(headers.in_reply_to()) {
        push(&id);
    }
    // The newest references are the nearest relatives: the end of the list first.
    for id in listed(headers.references()).iter().rev() {
        push(id);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::OnDuplicate;

    #[test]
    fn ids_are_bounded_and_deduplicated() {
        let mut raw = String::from("Message-ID: <own@x>\r\nIn-Reply-To: <parent@x>\r\nReferences:");
        for i in 0..100 {
            raw.push_str(&format!(" <r{i}@x>"));
        }
        raw.push_str(" <PARENT@x>\r\n\r\nbody\r\n");
        let ids = thread_ids(raw.as_bytes());
        assert_eq!(ids.len(), MAX_THREAD_IDS);
        assert_eq!(&ids[..3], ["own@x", "parent@x", "r99@x"]);
        assert!(thread_ids(b"no headers at all").is_empty());
    }

    #[test]
    fn a_thread_lists_only_what_the_principal_may_see() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::views::live_test_store(dir.path());
        let append = |from: &str, to: &str, headers: &str| {
            let raw = format!("From: {from}\r\nTo: {to}\r\nSubject: s\r\n{headers}\r\nbody\r\n");
            store
                .append_message(
                    &Envelope::lmtp(from, &[to]),
                    raw.as_bytes(),
                    OnDuplicate::RecordArrival,
                )
                .unwrap()
                .seq
        };
        let root = append("a@example.com", "b@example.com", "Message-ID: <root@x>\r\n");
        let secret = append("c@other.net", "d@other.net", "Message-ID: <secret@x>\r\n");
        let reply = append(
            "b@example.com",
            "a@example.com",
            "Message-ID: <reply@x>\r\nIn-Reply-To: <root@x>\r\nReferences: <secret@x> <root@x>\r\n",
        );
        let answer = append(
            "a@example.com",
            "b@example.com",
            "Message-ID: <answer@x>\r\nIn-Reply-To: <reply@x>\r\n",
        );
        let alice = Principal::user(["a@example.com"]).unwrap();
        let seqs = |p: &Principal, seq| -> Vec<u64> {
            store.thread_for(p, seq).unwrap().iter().map(|h| h.seq).collect()
        };
        assert_eq!(seqs(&alice, reply), [root, answer]);
        assert_eq!(seqs(&alice, root), [reply]);
        assert_eq!(seqs(&Principal::auditor_all(), reply), [root, secret, answer]);
        assert!(matches!(
            store.thread_for(&alice, secret),
            Err(crate::Error::NoSuchRecord(_))
        ));
        store.close().unwrap();
    }
}
