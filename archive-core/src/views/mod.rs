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
pub mod integrity;
mod message;
pub mod thread;

/// A new store under `dir` that indexes for search as it appends (what the view tests read).
#[cfg(test)]
pub(crate) fn live_test_store(dir: &std::path::Path) -> crate::Store {
    let path = dir.join("store");
    crate::Store::create(&path, &path.join("signing.key")).unwrap();
    let config = crate::StoreConfig {
        search_indexing: crate::SearchIndexing::Live,
        ..crate::StoreConfig::default()
    };
    crate::Store::open(&path, &path.join("signing.key"), config).unwrap()
}

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use entries::Entries;
pub use integrity::Integrity;
pub use message::ScopedMessage;

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
    /// Which entries a read found admitted by their own record (shared with the lists that
    /// extend this one).
    checked: Arc<Checked>,
}

/// Positions in a message list whose record [`Definition::admits`] accepted. A record never
/// changes (the log is append-only) and neither does a list's definition, so the check — a
/// parse of the header block when the envelope does not settle it — runs once per message
/// and list, not on every read. One bit per entry.
#[derive(Debug, Default)]
struct Checked(std::sync::RwLock<Vec<u64>>);

impl Checked {
    fn contains(&self, position: usize) -> bool {
        let words = self.0.read().unwrap_or_else(|p| p.into_inner());
        words
            .get(position / 64)
            .is_some_and(|w| w & (1 << (position % 64)) != 0)
    }

    /// Marks `position` (below the list's length, so the bits stay bounded by it).
    fn insert(&self, position: usize) {
        let mut words = self.0.write().unwrap_or_else(|p| p.into_inner());
        if words.len() <= position / 64 {
            words.resize(position / 64 + 1, 0);
        }
        words[position / 64] |= 1 << (position % 64);
    }
}

/// The newest message list of each view definition some session holds, so that another
/// session opening the same view shares it instead of building its own; and the lists
/// offered last, held for clients that log out and in again (pollers, phones, a sync run per
/// minute), which would otherwise rebuild a list of the whole mailbox from the index at
/// every login. At most [`KEPT_LISTS`] lists of [`KEPT_ENTRIES`] entries in all are held;
/// beyond that a list nobody holds is freed.
#[derive(Default)]
pub(crate) struct SharedViews {
    lists: Mutex<HashMap<ViewKey, Weak<MessageList>>>,
    /// Newest first.
    kept: Mutex<std::collections::VecDeque<(ViewKey, Arc<MessageList>)>>,
}

/// A view: its mailbox name and definition.
type ViewKey = (String, Definition);

/// Lists held for sessions to come, and their entries in all (16 bytes each).
const KEPT_LISTS: usize = 64;
const KEPT_ENTRIES: usize = 2_000_000;

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
            lists.insert(key.clone(), Arc::downgrade(list));
            drop(lists);
            self.keep(key, list);
        }
    }

    /// Holds `list` as the newest kept, in place of an older list of its view.
    fn keep(&self, key: (String, Definition), list: &Arc<MessageList>) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|(k, _)| *k != key);
        kept.push_front((key, Arc::clone(list)));
        let mut entries = 0;
        let within = kept
            .iter()
            .take_while(|(_, k)| {
                entries += k.entries.len();
                entries <= KEPT_ENTRIES
            })
            .count()
            .min(KEPT_LISTS);
        kept.truncate(within);
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

    /// UIDNEXT: one above the view's last UID (1 for an empty view). Every message that
    /// appears later has a higher seq than anything the view covers, so its UID is at least
    /// this; and this moves exactly when a message appears in the view (RFC 3501 §2.3.1.1).
    /// Not `as_of + 1`: every audit record and every message for someone else takes a seq,
    /// and a UIDNEXT that followed them would make clients resync on every poll.
    pub fn uid_next(&self) -> u64 {
        self.list.entries.last().map_or(1, |(uid, _)| uid + 1)
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
        // turn up later, so a message that appears later gets a UID above every UID listed
        // now (and so at least UIDNEXT). Anything written after shows up on the next refresh.
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
            checked: start.as_ref().map(|l| Arc::clone(&l.checked)).unwrap_or_default(),
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
        let Some(position) = view.list.entries.position(uid) else {
            return Err(Error::NoSuchRecord(uid));
        };
        if view.list.checked.contains(position) {
            if let Some((raw, received_us)) = self.cached_content(uid) {
                return Ok(ViewMessage { raw, received_us });
            }
        }
        let record = self.read_record(uid)?;
        let received_us = record.leaf.time_us;
        let leaf = record.leaf.clone();
        let raw = self.content_of(record)?;
        if view.list.checked.contains(position) {
            return Ok(ViewMessage { raw, received_us });
        }
        if !view.list.definition.admits(&leaf, &raw) {
            let event = crate::audit::AuditEvent {
                actor: "mailvault".into(),
                action: "access-refused".into(),
                target: format!("mailbox {} uid {uid} reason=record-not-in-view", view.mailbox),
                origin: "local".into(),
                ..Default::default()
            };
            self.append_audit(&event)?;
            return Err(Error::Index(format!(
                "record {uid} does not belong to mailbox {} by its own envelope and headers: \
                 the index disagrees with the log (run `mailvault reindex`)",
                view.mailbox
            )));
        }
        view.list.checked.insert(position);
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
mod tests;
