//! Mailboxes as views of the log: which messages a principal sees under a mailbox name, and
//! the only way a front door reads a message's bytes for a principal.
//!
//! A [`View`] is built by [`Store::view`] and cannot be built anywhere else, so holding one is
//! proof that the access check ran; [`Store::view_message`] reads bytes only for UIDs in it.
//!
//! Rules (docs/ARCHITECTURE.md, DESIGN "Access model"):
//! - `INBOX`: mail where one of the user's addresses is a header (To, Cc, Bcc) or envelope
//!   recipient; `Sent`: where it is the header (From, Sender) or envelope sender.
//! - Auditors: `Archive` is everything in scope; `Domains/<domain>` is the part of the scope
//!   concerning one domain (a domain in their scope, or any for an auditor of all). Their
//!   `INBOX` exists (IMAP requires it) and is empty: an auditor has no addresses.
//! - A message appears once per view, with the UID (log seq) of the first record, message or
//!   arrival, that made it visible there. So UIDs only grow: a later blind-copy delivery that
//!   first shows a message to a user appears above every UID the user has seen.
//! - UIDVALIDITY is a hash of the log's origin, the view's definition (mailbox and the
//!   principal's addresses or domains): it changes exactly when the definition changes.

mod check;
mod entries;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use entries::Entries;

use crate::index::kv::{KvIndex, Role};
use crate::log::record::{LeafBody, RecordKind};
use crate::search::Principal;
use crate::{Error, Result, Store};

/// Prefix of the per-domain auditor mailboxes.
pub const DOMAINS_PREFIX: &str = "Domains/";

/// What a mailbox is for, as RFC 6154 SPECIAL-USE says it (`None`: an ordinary mailbox).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecialUse {
    /// `\Sent`
    Sent,
    /// `\All`
    All,
}

/// A mailbox a principal may open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxInfo {
    /// The name as listed (`INBOX`, `Sent`, `Archive`, `Domains/example.com`).
    pub name: String,
    /// Its special use, if any.
    pub special_use: Option<SpecialUse>,
}

/// Which messages a view selects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Definition {
    /// Recipient role for these addresses.
    Received(BTreeSet<String>),
    /// Sender role for these addresses.
    Sent(BTreeSet<String>),
    /// Every message record.
    Everything,
    /// Records with an address in one of these domains (or subdomains).
    Domains(BTreeSet<String>),
    /// Nothing (an auditor's INBOX).
    Nothing,
}

/// The messages of one mailbox for one principal, as of one moment of the log. Cloning is
/// cheap: the message list is shared.
#[derive(Clone, Debug)]
pub struct View {
    mailbox: String,
    uid_validity: u32,
    list: Arc<MessageList>,
}

/// The messages of a view definition as of a seq: what views of the same definition share.
#[derive(Debug)]
struct MessageList {
    /// Which messages it holds.
    definition: Definition,
    /// (uid, message record seq), ascending by uid.
    entries: Entries,
    /// The durable seq the list covers: every record not in it has a higher seq.
    as_of: u64,
}

/// The newest message list of each view definition some session holds, so that another
/// session opening the same view shares it instead of building its own. Only weak
/// references: a list nobody holds is freed.
#[derive(Default)]
pub(crate) struct SharedViews {
    lists: Mutex<HashMap<(String, Definition), Weak<MessageList>>>,
}

impl SharedViews {
    fn get(&self, key: &(String, Definition)) -> Option<Arc<MessageList>> {
        let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.get(key).and_then(Weak::upgrade)
    }

    /// Offers `list` as the newest of its definition (an older one never replaces a newer).
    fn offer(&self, key: (String, Definition), list: &Arc<MessageList>) {
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.retain(|_, w| w.strong_count() > 0);
        let newer = lists
            .get(&key)
            .and_then(Weak::upgrade)
            .is_some_and(|known| known.as_of > list.as_of);
        if !newer {
            lists.insert(key, Arc::downgrade(list));
        }
    }
}

impl View {
    /// The canonical mailbox name (`INBOX` upper-cased, others as listed).
    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }

    /// UIDVALIDITY: nonzero, stable while the view's definition is.
    pub fn uid_validity(&self) -> u32 {
        self.uid_validity
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.list.entries.len()
    }

    /// Whether the view holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The UIDs, ascending (message sequence number n is `uids()[n-1]`).
    pub fn uids(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.list.entries.iter().map(|(uid, _)| uid)
    }

    /// The message record seq behind each UID, in UID order (search hits are per message
    /// record; this maps them back to the view).
    pub fn message_seqs(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.list.entries.iter().map(|(_, seq)| seq)
    }

    /// The UID of message sequence number `n` (1-based).
    pub fn uid_at(&self, n: usize) -> Option<u64> {
        n.checked_sub(1)
            .and_then(|i| self.list.entries.get(i))
            .map(|(uid, _)| uid)
    }

    /// The message record seq behind message sequence number `n` (1-based).
    pub fn message_seq_at(&self, n: usize) -> Option<u64> {
        n.checked_sub(1)
            .and_then(|i| self.list.entries.get(i))
            .map(|(_, seq)| seq)
    }

    /// The message sequence number (1-based) of `uid`, if it is in the view.
    pub fn position(&self, uid: u64) -> Option<usize> {
        self.list.entries.position(uid).map(|i| i + 1)
    }

    /// Whether `uid` is in the view.
    pub fn contains(&self, uid: u64) -> bool {
        self.position(uid).is_some()
    }

    /// A UID no message of the view has yet, and below every UID a message can get later.
    pub fn uid_next(&self) -> u64 {
        self.list.as_of + 1
    }

    /// The durable log seq the view covers (compare with `Store::stats().last_seq` to know
    /// whether a refresh may find something new).
    pub fn as_of(&self) -> u64 {
        self.list.as_of
    }
}

/// A message read through a view.
#[derive(Clone, Debug)]
pub struct ViewMessage {
    /// The exact bytes as received.
    pub raw: Vec<u8>,
    /// Receive time of the UID's record, microseconds since the Unix epoch (UTC).
    pub received_us: i64,
}

/// What is known about a message of a view without reading its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewEntry {
    /// Receive time of the UID's record, microseconds since the Unix epoch (UTC).
    pub received_us: i64,
    /// Size of the raw bytes.
    pub size: u64,
}

/// The mailboxes `principal` may open, in listing order.
pub fn mailboxes(principal: &Principal) -> Vec<MailboxInfo> {
    let mut out = vec![MailboxInfo {
        name: "INBOX".into(),
        special_use: None,
    }];
    match principal {
        Principal::User { .. } => out.push(MailboxInfo {
            name: "Sent".into(),
            special_use: Some(SpecialUse::Sent),
        }),
        Principal::Auditor { domains } => {
            out.push(MailboxInfo {
                name: "Archive".into(),
                special_use: Some(SpecialUse::All),
            });
            // An auditor of all has no finite list of domains; `Domains/<d>` still opens.
            for d in domains.iter().flatten() {
                out.push(MailboxInfo {
                    name: format!("{DOMAINS_PREFIX}{d}"),
                    special_use: None,
                });
            }
        }
    }
    out
}

/// The view definition behind a mailbox name, with the canonical name; `None` if the
/// principal has no such mailbox.
fn definition(principal: &Principal, mailbox: &str) -> Option<(String, Definition)> {
    if mailbox.eq_ignore_ascii_case("INBOX") {
        let def = match principal {
            Principal::User { addresses } => Definition::Received(addresses.clone()),
            Principal::Auditor { .. } => Definition::Nothing,
        };
        return Some(("INBOX".into(), def));
    }
    match principal {
        Principal::User { addresses } if mailbox == "Sent" => {
            Some(("Sent".into(), Definition::Sent(addresses.clone())))
        }
        Principal::Auditor { domains } if mailbox == "Archive" => {
            let def = match domains {
                None => Definition::Everything,
                Some(d) => Definition::Domains(d.clone()),
            };
            Some(("Archive".into(), def))
        }
        Principal::Auditor { domains } => {
            let d = mailbox.strip_prefix(DOMAINS_PREFIX)?.to_ascii_lowercase();
            if d.is_empty() || d.contains('/') {
                return None;
            }
            // The domain itself or a subdomain of one in scope.
            let in_scope = domains
                .as_ref()
                .is_none_or(|scope| scope.iter().any(|s| d == *s || d.ends_with(&format!(".{s}"))));
            in_scope.then(|| {
                (
                    format!("{DOMAINS_PREFIX}{d}"),
                    Definition::Domains(BTreeSet::from([d])),
                )
            })
        }
        _ => None,
    }
}

/// Deterministic nonzero UIDVALIDITY of a view definition in a log.
fn uid_validity(origin: &str, mailbox: &str, def: &Definition) -> u32 {
    let mut h = blake3::Hasher::new();
    h.update(b"mailvault uidvalidity v1\0");
    h.update(origin.as_bytes());
    h.update(b"\0");
    h.update(mailbox.as_bytes());
    let (tag, items): (&[u8], Vec<&String>) = match def {
        Definition::Received(a) => (b"\0received", a.iter().collect()),
        Definition::Sent(a) => (b"\0sent", a.iter().collect()),
        Definition::Everything => (b"\0everything", Vec::new()),
        Definition::Domains(d) => (b"\0domains", d.iter().collect()),
        Definition::Nothing => (b"\0nothing", Vec::new()),
    };
    h.update(tag);
    for item in items {
        h.update(b"\0");
        h.update(item.as_bytes());
    }
    let bytes = h.finalize();
    let b = bytes.as_bytes();
    let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    // Zero is not a valid UIDVALIDITY; the fallback keeps the value deterministic.
    if v == 0 {
        1
    } else {
        v
    }
}

impl Store {
    /// The view of `mailbox` for `principal`, as of now. Errors with [`Error::NoSuchMailbox`] if
    /// the principal has no such mailbox (the front door says "no such mailbox", nothing
    /// more, so a name never reveals whether mail exists behind it).
    pub fn view(&self, principal: &Principal, mailbox: &str) -> Result<View> {
        self.build_view(principal, mailbox, None)
    }

    /// `view` brought up to date with the log: only records after `view.as_of()` are
    /// looked at, so a session can refresh after every command. A view of another
    /// definition (the principal changed) is rebuilt whole.
    pub fn refresh_view(&self, principal: &Principal, view: &View) -> Result<View> {
        self.build_view(principal, view.mailbox(), Some(view))
    }

    fn build_view(&self, principal: &Principal, mailbox: &str, base: Option<&View>) -> Result<View> {
        let (name, def) =
            definition(principal, mailbox).ok_or_else(|| Error::NoSuchMailbox(mailbox.to_string()))?;
        let validity = uid_validity(self.origin(), &name, &def);
        // As of the durable seq the index is known to cover: a record below `as_of` can never
        // turn up later, so UIDNEXT (`as_of + 1`) is a promise that holds. Anything written
        // after is above it and shows up on the next refresh.
        let (as_of, index) = self.synced_index()?;
        let key = (name, def);
        // Start from the newest list of this definition: the caller's, or one another
        // session holds (same definition, so the same messages under the same UIDs).
        let own = base
            .filter(|b| b.mailbox == key.0 && b.list.definition == key.1)
            .map(|b| Arc::clone(&b.list));
        let shared = self.shared_views().get(&key);
        let start = match (own, shared) {
            (Some(a), Some(b)) => Some(if b.as_of > a.as_of { b } else { a }),
            (a, b) => a.or(b),
        };
        if let Some(list) = start.as_ref().filter(|l| l.as_of >= as_of) {
            return Ok(View {
                mailbox: key.0,
                uid_validity: validity,
                list: Arc::clone(list),
            });
        }
        let after = start.as_ref().map_or(0, |l| l.as_of);
        let seqs: Vec<u64> = match &key.1 {
            Definition::Received(addresses) => by_role(index, Role::Recipient, addresses, after)?,
            Definition::Sent(addresses) => by_role(index, Role::Sender, addresses, after)?,
            Definition::Everything => index.message_seqs(after + 1)?,
            Definition::Domains(domains) => {
                let mut all = Vec::new();
                for d in domains {
                    all.extend(index.by_domain(d, after)?);
                }
                all.sort_unstable();
                all.dedup();
                all
            }
            Definition::Nothing => Vec::new(),
        };
        let mut entries = start.as_ref().map(|l| l.entries.clone()).unwrap_or_default();
        // Message seqs already in the list; only needed (and only built) when an arrival
        // record may show a message a second time.
        let mut seen: Option<HashSet<u64>> = None;
        for seq in seqs.into_iter().filter(|s| *s > after && *s <= as_of) {
            let message_seq = self.message_seq_of(index, seq)?;
            // Ascending seqs: the first record seen for a message is the one that made it
            // visible here. A message record is the first of its message by definition.
            if message_seq != seq {
                let seen = seen.get_or_insert_with(|| entries.iter().map(|(_, m)| m).collect());
                if !seen.insert(message_seq) {
                    continue;
                }
            } else if let Some(seen) = &mut seen {
                seen.insert(message_seq);
            }
            entries.push((seq, message_seq));
        }
        let list = Arc::new(MessageList {
            definition: key.1.clone(),
            entries,
            as_of: as_of.max(after),
        });
        self.shared_views().offer(key.clone(), &list);
        Ok(View {
            mailbox: key.0,
            uid_validity: validity,
            list,
        })
    }

    /// The message record holding the bytes of message or arrival record `seq`.
    fn message_seq_of(&self, index: &KvIndex, seq: u64) -> Result<u64> {
        let location = index.location(seq)?.ok_or(Error::NoSuchRecord(seq))?;
        match location.kind {
            RecordKind::Message => Ok(seq),
            RecordKind::Arrival => match self.read_record(seq)?.leaf.body {
                LeafBody::Arrival { first_seq, .. } => Ok(first_seq),
                _ => Err(Error::Index(format!("record {seq} is indexed as an arrival"))),
            },
            other => Err(Error::Index(format!(
                "record {seq} ({}) is indexed under an address",
                other.name()
            ))),
        }
    }

    /// Receive time and size of `uid` in `view`, without decompressing the message.
    pub fn view_entry(&self, view: &View, uid: u64) -> Result<ViewEntry> {
        if !view.contains(uid) {
            return Err(Error::NoSuchRecord(uid));
        }
        let record = self.read_record(uid)?;
        let size = record.leaf.content().map(|(_, len)| len).unwrap_or(0);
        Ok(ViewEntry {
            received_us: record.leaf.time_us,
            size,
        })
    }

    /// The exact bytes of `uid` in `view`: the only read path for a principal. A UID outside
    /// the view is [`Error::NoSuchRecord`], the same answer as a UID that does not exist.
    ///
    /// The view comes from the index; before any byte leaves, the record read from the log
    /// must itself place the message in the view (`check`). If it does not, the index
    /// disagrees with the log: the read is refused ([`Error::Index`]) and an
    /// `access-refused` audit record says which UID of which mailbox.
    pub fn view_message(&self, view: &View, uid: u64) -> Result<ViewMessage> {
        if !view.contains(uid) {
            return Err(Error::NoSuchRecord(uid));
        }
        let record = self.read_record(uid)?;
        let received_us = record.leaf.time_us;
        let leaf = record.leaf.clone();
        let raw = self.content_of(record)?;
        if !view.list.definition.admits(&leaf, &raw) {
            let event = crate::audit::AuditEvent {
                actor: "mailvault".into(),
                action: "access-refused".into(),
                target: format!("mailbox {} uid {uid} reason=record-not-in-view", view.mailbox),
                origin: "local".into(),
            };
            self.append_audit(&event)?;
            return Err(Error::Index(format!(
                "record {uid} does not belong to mailbox {} by its own envelope and headers: \
                 the index disagrees with the log (run `mailvault reindex`)",
                view.mailbox
            )));
        }
        Ok(ViewMessage { raw, received_us })
    }
}

/// Records above `after` where any of `addresses` had `role`, ascending and deduplicated.
fn by_role(index: &KvIndex, role: Role, addresses: &BTreeSet<String>, after: u64) -> Result<Vec<u64>> {
    let mut all = Vec::new();
    for a in addresses {
        all.extend(index.by_address_after(role, a, after)?);
    }
    all.sort_unstable();
    all.dedup();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::envelope::Envelope;
    use crate::{OnDuplicate, SearchIndexing, StoreConfig};

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn envelope(from: &str, to: &[&str]) -> Envelope {
        Envelope::lmtp(from, to)
    }

    struct Archive {
        _dir: tempfile::TempDir,
        store: Store,
        /// seqs: rechnung (hans → erika, cc buchhaltung), report (alice → bob, cc carol),
        /// gruesse (peter → erika), a blind copy of report to erika (arrival), no-date
        /// (owl → alice).
        seqs: Vec<u64>,
    }

    fn archive() -> Archive {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        Store::create(&path, &path.join("signing.key")).unwrap();
        let config = StoreConfig {
            search_indexing: SearchIndexing::Deferred,
            ..StoreConfig::default()
        };
        let store = Store::open(&path, &path.join("signing.key"), config).unwrap();
        let mut seqs = Vec::new();
        let mut add = |file: &str, env: Envelope| {
            let a = store
                .append_message(&env, &fixture(file), OnDuplicate::RecordArrival)
                .unwrap();
            seqs.push(a.seq);
        };
        add(
            "search/de-rechnung.eml",
            envelope(
                "hans.mueller@example.de",
                &["erika@example.com", "buchhaltung@example.de"],
            ),
        );
        add(
            "search/en-report.eml",
            envelope("alice@example.com", &["bob@example.org", "carol@example.net"]),
        );
        add(
            "search/de-gruesse.eml",
            envelope("p.mueller@example.ch", &["erika@example.com"]),
        );
        // The same report bytes again, journaled for a blind copy to Erika: an arrival.
        add(
            "search/en-report.eml",
            envelope("alice@example.com", &["erika@example.com"]),
        );
        add(
            "search/no-date.eml",
            envelope("owl@example.org", &["alice@example.com"]),
        );
        Archive {
            _dir: dir,
            store,
            seqs,
        }
    }

    fn uids(v: &View) -> Vec<u64> {
        v.uids().collect()
    }

    #[test]
    fn user_inbox_and_sent_hold_their_mail_once_under_the_first_visible_seq() {
        let a = archive();
        let s = &a.seqs;
        let erika = Principal::user(["Erika@Example.com"]).unwrap();
        let inbox = a.store.view(&erika, "inbox").unwrap();
        assert_eq!(inbox.mailbox(), "INBOX");
        // The report reached Erika only as a blind copy: it appears under the arrival's seq.
        assert_eq!(uids(&inbox), vec![s[0], s[2], s[3]]);
        assert_eq!(inbox.uid_next(), a.store.stats().last_seq + 1);
        assert!(a.store.view(&erika, "Sent").unwrap().is_empty());

        let alice = Principal::user(["alice@example.com"]).unwrap();
        assert_eq!(uids(&a.store.view(&alice, "Sent").unwrap()), vec![s[1]]);
        assert_eq!(uids(&a.store.view(&alice, "INBOX").unwrap()), vec![s[4]]);

        // Both deliveries of the report show the same bytes.
        let blind = a.store.view_message(&inbox, s[3]).unwrap();
        assert_eq!(blind.raw, fixture("search/en-report.eml"));
        let entry = a.store.view_entry(&inbox, s[3]).unwrap();
        assert_eq!(entry.size, blind.raw.len() as u64);
        assert_eq!(entry.received_us, blind.received_us);
    }

    #[test]
    fn bytes_outside_the_view_are_not_readable() {
        let a = archive();
        let bob = Principal::user(["bob@example.org"]).unwrap();
        let inbox = a.store.view(&bob, "INBOX").unwrap();
        assert_eq!(uids(&inbox), vec![a.seqs[1]]);
        for uid in [a.seqs[0], a.seqs[2], a.seqs[3], a.seqs[4], 999] {
            assert!(matches!(
                a.store.view_message(&inbox, uid),
                Err(Error::NoSuchRecord(_))
            ));
            assert!(a.store.view_entry(&inbox, uid).is_err());
        }
        // Mailboxes of other roles do not exist for a user.
        for name in ["Archive", "Domains/example.org", "Sent/x", "", "INBOX/.."] {
            assert!(
                matches!(a.store.view(&bob, name), Err(Error::NoSuchMailbox(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn auditors_see_their_scope() {
        let a = archive();
        let s = &a.seqs;
        let all = Principal::auditor_all();
        let archive = a.store.view(&all, "Archive").unwrap();
        // Message records only: the arrival holds no new bytes.
        assert_eq!(uids(&archive), vec![s[0], s[1], s[2], s[4]]);
        assert!(a.store.view(&all, "INBOX").unwrap().is_empty());
        assert_eq!(
            uids(&a.store.view(&all, "Domains/example.ch").unwrap()),
            vec![s[2]]
        );

        let de = Principal::auditor_of(["example.de"]).unwrap();
        assert_eq!(uids(&a.store.view(&de, "Archive").unwrap()), vec![s[0]]);
        assert_eq!(
            uids(&a.store.view(&de, "Domains/example.de").unwrap()),
            vec![s[0]]
        );
        assert!(a.store.view(&de, "Domains/example.com").is_err());
        let names: Vec<_> = mailboxes(&de).into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["INBOX", "Archive", "Domains/example.de"]);

        // Subdomains are in scope; the arrival (blind copy to example.com) makes the
        // report visible to an example.com auditor under the message's seq.
        let com = Principal::auditor_of(["example.com"]).unwrap();
        assert_eq!(
            uids(&a.store.view(&com, "Archive").unwrap()),
            vec![s[0], s[1], s[2], s[4]]
        );
    }

    #[test]
    fn uid_validity_follows_the_definition() {
        let a = archive();
        let one = Principal::user(["erika@example.com"]).unwrap();
        let two = Principal::user(["erika@example.com", "e.m@example.com"]).unwrap();
        let v1 = a.store.view(&one, "INBOX").unwrap().uid_validity();
        assert_ne!(v1, 0);
        assert_eq!(v1, a.store.view(&one, "INBOX").unwrap().uid_validity());
        assert_ne!(v1, a.store.view(&two, "INBOX").unwrap().uid_validity());
        assert_ne!(v1, a.store.view(&one, "Sent").unwrap().uid_validity());
        // New mail does not change it.
        a.store
            .append_message(
                &envelope("x@example.org", &["erika@example.com"]),
                b"Subject: new\r\n\r\nhi\r\n",
                OnDuplicate::RecordArrival,
            )
            .unwrap();
        let again = a.store.view(&one, "INBOX").unwrap();
        assert_eq!(again.uid_validity(), v1);
        assert_eq!(again.len(), 4);
        let old = a.store.view(&one, "INBOX").unwrap();
        let refreshed = a.store.refresh_view(&one, &old).unwrap();
        assert_eq!(uids(&refreshed), uids(&again));
    }

    /// A refresh looks only at new records and gives what a fresh view gives: new
    /// messages, and old ones a new delivery makes visible, under the new seq.
    #[test]
    fn refresh_adds_only_what_is_new() {
        let a = archive();
        let bob = Principal::user(["bob@example.org"]).unwrap();
        let all = Principal::auditor_all();
        let inbox = a.store.view(&bob, "INBOX").unwrap();
        let archive = a.store.view(&all, "Archive").unwrap();
        // Bob gets a blind copy of the Grüße message (stored long ago) and a new one.
        let blind = a
            .store
            .append_message(
                &envelope("p.mueller@example.ch", &["bob@example.org"]),
                &fixture("search/de-gruesse.eml"),
                OnDuplicate::RecordArrival,
            )
            .unwrap();
        let new = a
            .store
            .append_message(
                &envelope("x@example.net", &["bob@example.org"]),
                b"To: bob@example.org\r\n\r\nnew\r\n",
                OnDuplicate::RecordArrival,
            )
            .unwrap();
        let refreshed = a.store.refresh_view(&bob, &inbox).unwrap();
        assert_eq!(uids(&refreshed), vec![a.seqs[1], blind.seq, new.seq]);
        assert_eq!(uids(&refreshed), uids(&a.store.view(&bob, "INBOX").unwrap()));
        let archive = a.store.refresh_view(&all, &archive).unwrap();
        assert_eq!(archive.uids().last(), Some(new.seq));
        assert_eq!(uids(&archive), uids(&a.store.view(&all, "Archive").unwrap()));
        // Another principal's view is rebuilt, not extended.
        let erika = Principal::user(["erika@example.com"]).unwrap();
        let other = a.store.refresh_view(&erika, &inbox).unwrap();
        assert_eq!(uids(&other), uids(&a.store.view(&erika, "INBOX").unwrap()));
    }

    #[test]
    fn sessions_of_one_view_share_its_list_and_nobody_else_does() {
        let a = archive();
        let bob = Principal::user(["bob@example.org"]).unwrap();
        let erika = Principal::user(["erika@example.com"]).unwrap();
        let first = a.store.view(&bob, "INBOX").unwrap();
        let second = a.store.view(&bob, "INBOX").unwrap();
        assert!(Arc::ptr_eq(&first.list, &second.list), "one list for one view");
        let sent = a.store.view(&bob, "Sent").unwrap();
        let other = a.store.view(&erika, "INBOX").unwrap();
        assert!(!Arc::ptr_eq(&first.list, &sent.list));
        assert!(!Arc::ptr_eq(&first.list, &other.list));
        assert_ne!(uids(&first), uids(&other));
        // Bob's own view with another address list is another definition.
        let bob_more = Principal::user(["bob@example.org", "bob@example.net"]).unwrap();
        assert!(!Arc::ptr_eq(
            &first.list,
            &a.store.view(&bob_more, "INBOX").unwrap().list
        ));

        // New mail: a refresh sees it, the views sessions hold stay as they were until
        // their own refresh, and the next session starts from the newest list.
        let before = uids(&first);
        let new = a
            .store
            .append_message(
                &envelope("x@example.net", &["bob@example.org"]),
                b"To: bob@example.org\r\n\r\nnew\r\n",
                OnDuplicate::RecordArrival,
            )
            .unwrap();
        let refreshed = a.store.refresh_view(&bob, &first).unwrap();
        assert_eq!(refreshed.uids().last(), Some(new.seq));
        assert_eq!(uids(&first), before);
        assert_eq!(uids(&second), before);
        let third = a.store.view(&bob, "INBOX").unwrap();
        assert!(Arc::ptr_eq(&third.list, &refreshed.list));
        let caught_up = a.store.refresh_view(&bob, &second).unwrap();
        assert!(Arc::ptr_eq(&caught_up.list, &refreshed.list));
        assert_eq!(uids(&other), uids(&a.store.view(&erika, "INBOX").unwrap()));
    }
}
