//! One message by its seq, as a principal may see it: what the web API's message, raw,
//! attachment and proof calls read. IMAP reads through mailbox views ([`super::View`]); a
//! search hit names a message by its record's seq, and this is the read path for that.
//!
//! The same two checks as a view read: the scope is part of the index query (a message outside
//! it is [`Error::NoSuchRecord`], the same answer as a seq that does not exist), and before any
//! byte leaves, the log's own records — the message record or one of the deliveries the
//! principal may see — must place the message in the principal's scope ([`Definition::admits`]).

use crate::log::record::RecordKind;
use crate::search::{Hit, Principal};
use crate::{Error, Result, Store};

use super::Definition;

/// A message read for a principal.
#[derive(Clone, Debug)]
pub struct ScopedMessage {
    /// What the principal may see of it (headers, the deliveries they may see).
    pub hit: Hit,
    /// The exact bytes as received.
    pub raw: Vec<u8>,
    /// Receive time of the message record, microseconds since the Unix epoch (UTC).
    pub received_us: i64,
    /// The message record's leaf bytes (what its inclusion proof is over).
    pub leaf_bytes: Vec<u8>,
}

/// The view definitions whose union is everything `principal` may see.
fn scope_definitions(principal: &Principal) -> Vec<Definition> {
    match principal {
        Principal::User { addresses } => vec![
            Definition::Received(addresses.clone()),
            Definition::Sent(addresses.clone()),
        ],
        Principal::Auditor { domains: None } => vec![Definition::Everything],
        Principal::Auditor { domains: Some(d) } => vec![Definition::Domains(d.clone())],
    }
}

impl Store {
    /// The message whose record is `seq`, for `principal`. A seq outside their scope, of no
    /// record or of a record that is not a message is [`Error::NoSuchRecord`], one answer for
    /// all. If the index puts the message in scope but no record the principal may see does,
    /// the index disagrees with the log: refused ([`Error::Index`]) and audited as
    /// `access-refused`, as [`Store::view_message`] does.
    pub fn message_for(&self, principal: &Principal, seq: u64) -> Result<ScopedMessage> {
        let hit = self.hit_for(principal, seq)?.ok_or(Error::NoSuchRecord(seq))?;
        let record = self.read_record(seq)?;
        if record.leaf.kind() != RecordKind::Message {
            return Err(Error::NoSuchRecord(seq));
        }
        let received_us = record.leaf.time_us;
        let leaf = record.leaf.clone();
        let leaf_bytes = record.leaf_bytes.clone();
        let raw = self.content_of(record)?;
        let definitions = scope_definitions(principal);
        let mut admitted = definitions.iter().any(|d| d.admits(&leaf, &raw));
        // A message a user sees only through a later delivery (a blind copy): that arrival
        // record must say so itself.
        for delivery in hit.deliveries.iter().filter(|d| d.kind == "arrival") {
            if admitted {
                break;
            }
            let arrival = self.read_record(delivery.seq)?;
            admitted = definitions.iter().any(|d| d.admits(&arrival.leaf, &raw));
        }
        if !admitted {
            let event = crate::audit::AuditEvent::new(
                "mailvault",
                "access-refused",
                format!("seq {seq} reason=record-not-in-scope"),
                "local",
            );
            self.append_audit(&event)?;
            return Err(Error::Index(format!(
                "record {seq} is not in the principal's scope by its own envelope and headers: \
                 the index disagrees with the log (run `mailvault reindex`)"
            )));
        }
        Ok(ScopedMessage {
            hit,
            raw,
            received_us,
            leaf_bytes,
        })
    }

    /// The inclusion proof of message `seq`'s record in the newest signed checkpoint, for
    /// `principal` (scope as [`Store::message_for`]), checked before it is handed out.
    pub fn proof_for(&self, principal: &Principal, seq: u64) -> Result<crate::export::bundle::ProofDocument> {
        let message = self.message_for(principal, seq)?;
        let (_, checkpoint) = self
            .latest_checkpoint()
            .ok_or_else(|| Error::Unusable("the log has no checkpoint yet".into()))?;
        if checkpoint.checkpoint.size < seq {
            // Every acknowledged record is under a checkpoint; a fresher one is written now.
            return Err(Error::Unusable(format!(
                "record {seq} is not under a signed checkpoint yet"
            )));
        }
        let path = self.inclusion_proof(seq, checkpoint.checkpoint.size)?;
        let inclusion =
            crate::export::bundle::checked_proof(path, &checkpoint.checkpoint, &message.leaf_bytes, seq)?;
        Ok(crate::export::bundle::ProofDocument {
            inclusion,
            checkpoint: checkpoint.note,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::OnDuplicate;

    #[test]
    fn a_message_is_read_only_within_the_scope_and_a_blind_copy_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::views::live_test_store(dir.path());
        let raw = b"From: x@other.net\r\nTo: bob@other.net\r\nSubject: for bob\r\n\r\nsecret\r\n";
        let to_bob = store
            .append_message(
                &Envelope::lmtp("x@other.net", &["bob@other.net"]),
                raw,
                OnDuplicate::RecordArrival,
            )
            .unwrap()
            .seq;
        let alice = Principal::user(["alice@example.com"]).unwrap();
        let bob = Principal::user(["bob@other.net"]).unwrap();
        let example = Principal::auditor_of(["example.com"]).unwrap();
        let other = Principal::auditor_of(["other.net"]).unwrap();
        for outsider in [&alice, &example] {
            assert!(matches!(
                store.message_for(outsider, to_bob),
                Err(Error::NoSuchRecord(_))
            ));
            assert!(matches!(
                store.proof_for(outsider, to_bob),
                Err(Error::NoSuchRecord(_))
            ));
        }
        for insider in [&bob, &other, &Principal::auditor_all()] {
            let read = store.message_for(insider, to_bob).unwrap();
            assert_eq!(read.raw, raw);
            assert_eq!(read.hit.subject, "for bob");
        }
        assert_eq!(store.proof_for(&bob, to_bob).unwrap().inclusion.seq, to_bob);
        assert!(matches!(
            store.message_for(&bob, 999),
            Err(Error::NoSuchRecord(_))
        ));
        // A later blind copy to alice (an arrival) shows her the message, with only her
        // delivery.
        let arrival = store
            .append_message(
                &Envelope::lmtp("x@other.net", &["alice@example.com"]),
                raw,
                OnDuplicate::RecordArrival,
            )
            .unwrap()
            .seq;
        // An arrival is not a message: the same answer as a seq of nothing.
        assert!(matches!(
            store.message_for(&Principal::auditor_all(), arrival),
            Err(Error::NoSuchRecord(_))
        ));
        let read = store.message_for(&alice, to_bob).unwrap();
        assert_eq!(read.raw, raw);
        assert_eq!(read.hit.deliveries.len(), 1);
        assert_eq!(read.hit.deliveries[0].recipients, ["alice@example.com"]);
        store.close().unwrap();
    }
}
