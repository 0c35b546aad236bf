//! The last check of every read for a principal: the record itself — its envelope and, for a
//! message record, its header block — must put it in the view. Views are built from the
//! key-value index, which is derived data; this check means a wrong or swapped index can
//! hide mail from a principal but never show them mail that is not theirs.
//!
//! The rule is the index's own: a record concerns an address in a role exactly when the index
//! would have listed it under that address ([`IndexEntry::new`] on the record as read).

use crate::index::kv::{HeaderTerms, IndexEntry, Location, Role};
use crate::log::record::{Leaf, RecordKind};

use super::Definition;

impl Definition {
    /// Whether record `leaf` (a message with bytes `raw`, or an arrival) belongs to a view of
    /// this definition, judged from the record alone.
    pub(super) fn admits(&self, leaf: &Leaf, raw: &[u8]) -> bool {
        let kind = leaf.kind();
        // Header addresses only add to the envelope's, so the envelope alone settles most
        // reads (this runs for every message FETCH reads) and the header block is parsed only
        // when it has not. An arrival's header block is its message's, which the index files
        // under the message record; the arrival itself is filed by its envelope only.
        self.admits_entry(leaf, kind, None)
            || (kind == RecordKind::Message && self.admits_entry(leaf, kind, Some(HeaderTerms::parse(raw))))
    }

    /// Whether the index entry of `leaf` (with `headers`, if given) is in this view.
    fn admits_entry(&self, leaf: &Leaf, kind: RecordKind, headers: Option<HeaderTerms>) -> bool {
        let location = Location {
            segment: 0,
            offset: 0,
            len: 0,
            kind,
        };
        let entry = IndexEntry::new(leaf, [0; 32], location, headers);
        let has = |role: Role, wanted: &str| {
            let wanted = wanted.trim().to_lowercase();
            entry.addresses().any(|(r, a)| r == role && a == wanted)
        };
        match self {
            Definition::Received(addresses) => addresses.iter().any(|a| has(Role::Recipient, a)),
            Definition::Sent(addresses) => addresses.iter().any(|a| has(Role::Sender, a)),
            Definition::Everything => kind == RecordKind::Message,
            // As `KvIndex::by_domain`: the domain itself or a subdomain, either role.
            Definition::Domains(domains) => entry.addresses().any(|(_, address)| {
                let host = address.rsplit_once('@').map_or("", |(_, h)| h);
                domains.iter().any(|d| {
                    let d = d.trim().trim_start_matches('@').to_lowercase();
                    host == d || host.ends_with(&format!(".{d}"))
                })
            }),
            Definition::Nothing => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::super::{entries::Entries, MessageList, View};
    use super::*;
    use crate::log::record::LeafBody;
    use crate::search::Principal;
    use crate::{Envelope, Error, OnDuplicate, SearchIndexing, Store, StoreConfig};

    fn store(dir: &std::path::Path) -> Store {
        let path = dir.join("store");
        Store::create(&path, &path.join("signing.key")).unwrap();
        let config = StoreConfig {
            search_indexing: SearchIndexing::Deferred,
            ..StoreConfig::default()
        };
        Store::open(&path, &path.join("signing.key"), config).unwrap()
    }

    /// A view of `definition` that claims to hold `uids` (each its own message record), as
    /// a wrong index would build it.
    fn forged_view(mailbox: &str, definition: Definition, uids: &[u64]) -> View {
        let mut entries = Entries::default();
        for uid in uids {
            entries.push((*uid, *uid));
        }
        View {
            mailbox: mailbox.into(),
            uid_validity: 1,
            list: Arc::new(MessageList {
                definition,
                entries,
                as_of: uids.iter().copied().max().unwrap_or(0),
                checked: Default::default(),
            }),
        }
    }

    #[test]
    fn a_record_the_principal_may_not_see_is_refused_even_if_the_view_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let to_bob = store
            .append_message(
                &Envelope::lmtp("x@example.net", &["bob@example.org"]),
                b"From: x@example.net\r\nTo: bob@example.org\r\nSubject: for bob\r\n\r\nsecret\r\n",
                OnDuplicate::RecordArrival,
            )
            .unwrap();
        let bcc_alice = store
            .append_message(
                &Envelope::lmtp("x@example.net", &["carol@example.org"]),
                b"From: x@example.net\r\nTo: carol@example.org\r\nBcc: Alice@Example.com\r\n\r\nhi\r\n",
                OnDuplicate::RecordArrival,
            )
            .unwrap();
        let alice = Principal::user(["alice@example.com"]).unwrap();
        let Principal::User { addresses } = &alice else {
            unreachable!()
        };
        let inbox = forged_view(
            "INBOX",
            Definition::Received(addresses.clone()),
            &[to_bob.seq, bcc_alice.seq],
        );
        let before = store.stats().last_seq;
        let refused = store.view_message(&inbox, to_bob.seq);
        assert!(matches!(refused, Err(Error::Index(_))), "{refused:?}");
        // The refusal is in the audit trail (then the checkpoint of its group commit).
        assert_eq!(store.stats().last_seq, before + 2);
        let record = store.read_record_unscoped(before + 1).unwrap();
        let LeafBody::Audit { event } = &record.leaf.body else {
            panic!("no audit record for the refusal");
        };
        let event: crate::audit::AuditEvent = serde_json::from_slice(event).unwrap();
        assert_eq!(event.action, "access-refused");
        assert!(event.target.contains(&format!("uid {}", to_bob.seq)), "{event:?}");
        // What the record itself shows to Alice (a header Bcc, any case) is read, again and
        // again (the check is remembered); a refusal is never remembered as a pass.
        let first = store.view_message(&inbox, bcc_alice.seq).unwrap();
        // The second read comes from the read cache, the check remembered: the same bytes
        // and receive time.
        let again = store.view_message(&inbox, bcc_alice.seq).unwrap();
        assert_eq!((first.raw, first.received_us), (again.raw, again.received_us));
        assert!(inbox.list.checked.contains(1));
        assert!(!inbox.list.checked.contains(0));
        assert!(matches!(
            store.view_message(&inbox, to_bob.seq),
            Err(Error::Index(_))
        ));

        // The same for the other definitions.
        let sent = forged_view("Sent", Definition::Sent(addresses.clone()), &[to_bob.seq]);
        assert!(store.view_message(&sent, to_bob.seq).is_err());
        let domains = BTreeSet::from(["example.com".to_string()]);
        let de = forged_view(
            "Archive",
            Definition::Domains(domains),
            &[to_bob.seq, bcc_alice.seq],
        );
        assert!(store.view_message(&de, to_bob.seq).is_err());
        assert!(store.view_message(&de, bcc_alice.seq).is_ok());
        let nothing = forged_view("INBOX", Definition::Nothing, &[to_bob.seq]);
        assert!(store.view_message(&nothing, to_bob.seq).is_err());
        let everything = forged_view("Archive", Definition::Everything, &[to_bob.seq]);
        assert!(store.view_message(&everything, to_bob.seq).is_ok());
        store.close().unwrap();
    }
}
