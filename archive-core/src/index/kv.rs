//! The key-value index (redb): where each record is, which record first stored some bytes,
//! and which records concern a Message-ID or an address. Derived from the log: deleting the
//! file loses nothing, the store rebuilds it at open.
//!
//! The index is bound to one log: it records the log's origin (`store.json`) and the chain
//! hash of the last record it applied. An index of another store (or of another history of
//! this one) fails that check at open and is rebuilt, so views never rest on somebody else's
//! address table (issue #10, defect 12).

use std::path::Path;
use std::sync::LazyLock;

use mail_parser::{Address, HeaderName, MessageParser};
use redb::{Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition};

use crate::envelope::Envelope;
use crate::log::record::{Leaf, LeafBody, RecordKind};
use crate::{Error, Result};

/// A parser for the headers the index keeps. Every other header is skipped unparsed:
/// `Received` chains alone cost more to parse than everything indexed here.
static INDEXED_HEADERS: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .header_id(HeaderName::MessageId)
        .header_address(HeaderName::From)
        .header_address(HeaderName::Sender)
        .header_address(HeaderName::To)
        .header_address(HeaderName::Cc)
        .header_address(HeaderName::Bcc)
        .default_header_ignore()
});

/// Applied-seq bookkeeping.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// seq → (segment first seq, frame offset, frame length, kind byte).
const LOCATIONS: TableDefinition<u64, (u64, u64, u64, u8)> = TableDefinition::new("locations");
/// blake3 content hash → seq of the message record holding the bytes.
const CONTENT: TableDefinition<&[u8], u64> = TableDefinition::new("content");
/// Message-ID (without angle brackets) → seqs of message records.
const MESSAGE_IDS: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("message_ids");
/// `s:address` (sender) / `r:address` (recipient), lower-cased → seqs of message and arrival
/// records where that address appears in the envelope or (for messages) the header.
const ADDRESSES: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("addresses");

const APPLIED_KEY: &str = "applied_seq";
/// Seq of the newest dictionary record.
const DICTIONARY_KEY: &str = "dictionary_seq";
/// Bumped when the tables change meaning; a mismatch makes the store rebuild the index.
const SCHEMA_KEY: &str = "schema";
/// Version 2 added the binding to the log (origin and chain hash).
const SCHEMA_VERSION: u64 = 2;
/// Which log the index was built from: `origin` → the log's origin, `chain` → the chain hash
/// after the record at the applied seq (absent while nothing is applied).
const BINDING: TableDefinition<&str, &[u8]> = TableDefinition::new("binding");
const ORIGIN_KEY: &str = "origin";
const CHAIN_KEY: &str = "chain";

/// Where a record's frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Seq of the first record of the segment (names the file).
    pub segment: u64,
    /// Offset of the frame in the segment.
    pub offset: u64,
    /// Length of the frame.
    pub len: u64,
    /// The record's kind.
    pub kind: RecordKind,
}

/// Whether an address was a sender or a recipient of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Envelope MAIL FROM, header From or Sender.
    Sender,
    /// Envelope RCPT TO (or decoded originals), header To, Cc or Bcc.
    Recipient,
}

impl Role {
    fn prefix(self) -> &'static str {
        match self {
            Role::Sender => "s:",
            Role::Recipient => "r:",
        }
    }
}

/// What the index learns from a message's header block: its Message-ID and the addresses of
/// From, Sender, To, Cc and Bcc (role-prefixed, lowercased).
#[derive(Debug, Default)]
pub struct HeaderTerms {
    message_ids: Vec<String>,
    addresses: Vec<String>,
}

impl HeaderTerms {
    /// Parses only the header block, and in it only the headers indexed here; a message that
    /// does not parse yields nothing (parsing failures degrade indexing, never storage).
    pub fn parse(raw: &[u8]) -> HeaderTerms {
        let mut terms = HeaderTerms::default();
        let Some(msg) = INDEXED_HEADERS.parse_headers(raw) else {
            return terms;
        };
        if let Some(id) = msg.message_id() {
            terms.message_ids.push(id.to_string());
        }
        let mut add_all = |role, addr: Option<&Address>| {
            for a in addr.into_iter().flat_map(|a| a.iter()) {
                if let Some(addr) = a.address() {
                    push_address(&mut terms.addresses, role, addr.as_bytes());
                }
            }
        };
        add_all(Role::Sender, msg.from());
        add_all(Role::Sender, msg.sender());
        add_all(Role::Recipient, msg.to());
        add_all(Role::Recipient, msg.cc());
        add_all(Role::Recipient, msg.bcc());
        terms
    }
}

fn push_address(addresses: &mut Vec<String>, role: Role, address: &[u8]) {
    let a = String::from_utf8_lossy(address).trim().to_lowercase();
    if !a.is_empty() {
        addresses.push(format!("{}{a}", role.prefix()));
    }
}

/// Everything the index learns from one record.
#[derive(Debug, Default)]
pub struct IndexEntry {
    seq: u64,
    location: Option<Location>,
    content: Option<[u8; 32]>,
    message_ids: Vec<String>,
    addresses: Vec<String>,
    dictionary: bool,
    /// Chain hash after this record (binds the index to the log it was built from).
    chain: [u8; 32],
}

impl IndexEntry {
    /// Seq of the record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Where the record is.
    pub fn location(&self) -> Option<Location> {
        self.location
    }

    /// The addresses the record is filed under, with their role (lower-cased).
    pub fn addresses(&self) -> impl Iterator<Item = (Role, &str)> {
        self.addresses.iter().filter_map(|a| {
            if let Some(rest) = a.strip_prefix(Role::Sender.prefix()) {
                Some((Role::Sender, rest))
            } else {
                a.strip_prefix(Role::Recipient.prefix())
                    .map(|rest| (Role::Recipient, rest))
            }
        })
    }

    /// Extracts the index entry of a record read from the log; `content` is the raw message
    /// for message records.
    /// `chain` is the chain hash stored with the record.
    pub fn from_record(
        leaf: &Leaf,
        chain: [u8; 32],
        location: Location,
        content: Option<&[u8]>,
    ) -> IndexEntry {
        IndexEntry::new(leaf, chain, location, content.map(HeaderTerms::parse))
    }

    /// The index entry of a record with chain hash `chain`, with the header terms of its
    /// message already parsed.
    pub fn new(leaf: &Leaf, chain: [u8; 32], location: Location, headers: Option<HeaderTerms>) -> IndexEntry {
        let mut entry = IndexEntry {
            seq: leaf.seq,
            location: Some(location),
            chain,
            ..IndexEntry::default()
        };
        match &leaf.body {
            LeafBody::Message { content_hash, .. } => entry.content = Some(*content_hash),
            LeafBody::Dictionary { .. } => entry.dictionary = true,
            _ => {}
        }
        if let Some(Ok(envelope)) = leaf.envelope() {
            entry.add_envelope(&envelope);
        }
        if let Some(headers) = headers {
            entry.message_ids = headers.message_ids;
            entry.addresses.extend(headers.addresses);
        }
        entry.addresses.sort();
        entry.addresses.dedup();
        entry
    }

    fn add_envelope(&mut self, envelope: &Envelope) {
        push_address(&mut self.addresses, Role::Sender, &envelope.mail_from);
        for r in envelope.recipients() {
            push_address(&mut self.addresses, Role::Recipient, r);
        }
    }
}

/// The redb key-value index.
pub struct KvIndex {
    db: Database,
    /// The origin of the log this index belongs to.
    origin: String,
}

impl KvIndex {
    /// Opens or creates the index file of the log `origin`; an index of another schema
    /// version or of another log is emptied. (Whether it matches the log's history is the
    /// store's check: [`KvIndex::applied_chain`].)
    pub fn open(path: &Path, origin: &str) -> Result<KvIndex> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked(path.to_path_buf()),
            e => Error::Index(format!("{}: {e}", path.display())),
        })?;
        let index = KvIndex {
            db,
            origin: origin.to_string(),
        };
        let schema = index.meta(SCHEMA_KEY)?;
        let bound_to = index.binding(ORIGIN_KEY)?;
        if schema != Some(SCHEMA_VERSION) || bound_to.as_deref() != Some(origin.as_bytes()) {
            index.clear()?;
        }
        Ok(index)
    }

    fn binding(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read()?;
        match tx.open_table(BINDING) {
            Ok(t) => Ok(t.get(key)?.map(|v| v.value().to_vec())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The chain hash after the record at [`KvIndex::applied_seq`], as this index recorded
    /// it (`None` when nothing is applied). The store compares it with the log's.
    pub fn applied_chain(&self) -> Result<Option<[u8; 32]>> {
        Ok(self
            .binding(CHAIN_KEY)?
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok()))
    }

    fn meta(&self, key: &str) -> Result<Option<u64>> {
        let tx = self.db.begin_read()?;
        match tx.open_table(META) {
            Ok(t) => Ok(t.get(key)?.map(|v| v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Empties every table (used for a rebuild).
    pub fn clear(&self) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.delete_table(META)?;
        tx.delete_table(LOCATIONS)?;
        tx.delete_table(CONTENT)?;
        tx.delete_multimap_table(MESSAGE_IDS)?;
        tx.delete_multimap_table(ADDRESSES)?;
        tx.delete_table(BINDING)?;
        {
            let mut meta = tx.open_table(META)?;
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
            meta.insert(APPLIED_KEY, 0)?;
            tx.open_table(BINDING)?
                .insert(ORIGIN_KEY, self.origin.as_bytes())?;
            // Create the tables now so readers never meet a missing one.
            tx.open_table(LOCATIONS)?;
            tx.open_table(CONTENT)?;
            tx.open_multimap_table(MESSAGE_IDS)?;
            tx.open_multimap_table(ADDRESSES)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The last log seq applied (0 for none).
    pub fn applied_seq(&self) -> Result<u64> {
        Ok(self.meta(APPLIED_KEY)?.unwrap_or(0))
    }

    /// Applies a batch of consecutive records and moves the applied seq to the last one, in
    /// one transaction. `durable` makes the commit fsync; otherwise a crash may roll the index
    /// back to an earlier durable commit, which catch-up repairs.
    pub fn apply(&self, entries: &[IndexEntry], durable: bool) -> Result<()> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let mut tx = self.db.begin_write()?;
        tx.set_durability(if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        })
        .map_err(|e| Error::Index(e.to_string()))?;
        {
            let mut locations = tx.open_table(LOCATIONS)?;
            let mut content = tx.open_table(CONTENT)?;
            let mut ids = tx.open_multimap_table(MESSAGE_IDS)?;
            let mut addresses = tx.open_multimap_table(ADDRESSES)?;
            for e in entries {
                if let Some(l) = e.location {
                    locations.insert(e.seq, (l.segment, l.offset, l.len, l.kind as u8))?;
                }
                if let Some(h) = &e.content {
                    if content.get(h.as_slice())?.is_none() {
                        content.insert(h.as_slice(), e.seq)?;
                    }
                }
                for id in &e.message_ids {
                    ids.insert(id.as_str(), e.seq)?;
                }
                for a in &e.addresses {
                    addresses.insert(a.as_str(), e.seq)?;
                }
            }
            let mut meta = tx.open_table(META)?;
            meta.insert(APPLIED_KEY, last.seq)?;
            tx.open_table(BINDING)?.insert(CHAIN_KEY, last.chain.as_slice())?;
            if let Some(d) = entries.iter().rev().find(|e| e.dictionary) {
                meta.insert(DICTIONARY_KEY, d.seq)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Seq of the newest dictionary record applied, if any.
    pub fn latest_dictionary(&self) -> Result<Option<u64>> {
        self.meta(DICTIONARY_KEY)
    }

    /// Makes every earlier commit durable.
    pub fn persist(&self) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.commit()?;
        Ok(())
    }

    /// Rewrites the file without free pages. redb cannot reuse pages freed by commits that
    /// are not yet durable, so a bulk load leaves the file up to twice its live size.
    pub fn compact(&mut self) -> Result<()> {
        self.db
            .compact()
            .map(|_| ())
            .map_err(|e| Error::Index(format!("compacting: {e}")))
    }

    /// Every row of every table, one line each (tests compare indexes built different ways).
    #[cfg(test)]
    pub(crate) fn dump(&self) -> Result<Vec<String>> {
        use redb::ReadableMultimapTable;
        let tx = self.db.begin_read()?;
        let mut rows = Vec::new();
        for row in tx.open_table(META)?.iter()? {
            let (k, v) = row?;
            rows.push(format!("meta {} {}", k.value(), v.value()));
        }
        for row in tx.open_table(BINDING)?.iter()? {
            let (k, v) = row?;
            rows.push(format!("binding {} {:02x?}", k.value(), v.value()));
        }
        for row in tx.open_table(LOCATIONS)?.iter()? {
            let (k, v) = row?;
            rows.push(format!("location {} {:?}", k.value(), v.value()));
        }
        for row in tx.open_table(CONTENT)?.iter()? {
            let (k, v) = row?;
            rows.push(format!("content {:02x?} {}", k.value(), v.value()));
        }
        for (name, table) in [("message-id", MESSAGE_IDS), ("address", ADDRESSES)] {
            for row in tx.open_multimap_table(table)?.iter()? {
                let (k, values) = row?;
                for v in values {
                    rows.push(format!("{name} {} {}", k.value(), v?.value()));
                }
            }
        }
        Ok(rows)
    }

    /// Where record `seq` is, if indexed.
    pub fn location(&self, seq: u64) -> Result<Option<Location>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(LOCATIONS)?;
        Ok(t.get(seq)?.and_then(|v| {
            let (segment, offset, len, kind) = v.value();
            Some(Location {
                segment,
                offset,
                len,
                kind: RecordKind::from_byte(kind)?,
            })
        }))
    }

    /// The message record that first stored bytes with this blake3 hash.
    pub fn first_with_content(&self, hash: &[u8; 32]) -> Result<Option<u64>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CONTENT)?;
        Ok(t.get(hash.as_slice())?.map(|v| v.value()))
    }

    /// Message records with this Message-ID (angle brackets optional), ascending.
    pub fn by_message_id(&self, id: &str) -> Result<Vec<u64>> {
        let id = id.trim().trim_start_matches('<').trim_end_matches('>');
        let tx = self.db.begin_read()?;
        let t = tx.open_multimap_table(MESSAGE_IDS)?;
        let mut out = Vec::new();
        for v in t.get(id)? {
            out.push(v?.value());
        }
        Ok(out)
    }

    /// Message and arrival records where `address` had `role`, ascending.
    pub fn by_address(&self, role: Role, address: &str) -> Result<Vec<u64>> {
        self.by_address_after(role, address, 0)
    }

    /// The seqs of [`KvIndex::by_address`] above `after`, ascending. Reads only those (from the
    /// newest down), so a view refresh costs what is new, not the whole mailbox.
    pub fn by_address_after(&self, role: Role, address: &str, after: u64) -> Result<Vec<u64>> {
        let key = format!("{}{}", role.prefix(), address.trim().to_lowercase());
        let tx = self.db.begin_read()?;
        let t = tx.open_multimap_table(ADDRESSES)?;
        let mut out = Vec::new();
        for v in t.get(key.as_str())?.rev() {
            let seq = v?.value();
            if seq <= after {
                break;
            }
            out.push(seq);
        }
        out.reverse();
        Ok(out)
    }

    /// Message records from seq `from` on, ascending (the whole archive, as an auditor of all
    /// sees it).
    pub fn message_seqs(&self, from: u64) -> Result<Vec<u64>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(LOCATIONS)?;
        let mut out = Vec::new();
        for row in t.range(from..)? {
            let (k, v) = row?;
            if v.value().3 == RecordKind::Message as u8 {
                out.push(k.value());
            }
        }
        Ok(out)
    }

    /// Message and arrival records above `after` where any address (either role) is in
    /// `domain` or one of its subdomains, ascending and deduplicated. Scans the address keys
    /// (the table is keyed by whole address), and of each matching one only the seqs above
    /// `after`.
    pub fn by_domain(&self, domain: &str, after: u64) -> Result<Vec<u64>> {
        use redb::ReadableMultimapTable;
        let domain = domain.trim().trim_start_matches('@').to_lowercase();
        let at = format!("@{domain}");
        let dot = format!(".{domain}");
        let tx = self.db.begin_read()?;
        let t = tx.open_multimap_table(ADDRESSES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, values) = row?;
            let key = k.value();
            let address = key.get(2..).unwrap_or("");
            let host_matches = address
                .rfind('@')
                .map(|i| &address[i..])
                .is_some_and(|host| host == at || host.ends_with(&dot));
            if host_matches {
                for v in values.rev() {
                    let seq = v?.value();
                    if seq <= after {
                        break;
                    }
                    out.push(seq);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}
