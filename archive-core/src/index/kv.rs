//! The key-value index (redb): where each record is, which record first stored some bytes,
//! and which records concern a Message-ID or an address. Derived from the log: deleting the
//! file loses nothing, the store rebuilds it at open.

use std::path::Path;

use mail_parser::{Address, MessageParser};
use redb::{Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition};

use crate::envelope::Envelope;
use crate::log::record::{Leaf, LeafBody, RecordKind};
use crate::{Error, Result};

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
const SCHEMA_VERSION: u64 = 1;

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

/// Everything the index learns from one record.
#[derive(Debug, Default)]
pub struct IndexEntry {
    seq: u64,
    location: Option<Location>,
    content: Option<[u8; 32]>,
    message_ids: Vec<String>,
    addresses: Vec<String>,
    dictionary: bool,
}

impl IndexEntry {
    /// Seq of the record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Extracts the index entry of a record; `content` is the raw message for message records.
    pub fn from_record(leaf: &Leaf, location: Location, content: Option<&[u8]>) -> IndexEntry {
        let mut entry = IndexEntry {
            seq: leaf.seq,
            location: Some(location),
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
        if let Some(raw) = content {
            entry.add_headers(raw);
        }
        entry.addresses.sort();
        entry.addresses.dedup();
        entry
    }

    fn add_address(&mut self, role: Role, address: &[u8]) {
        let a = String::from_utf8_lossy(address).trim().to_lowercase();
        if !a.is_empty() {
            self.addresses.push(format!("{}{a}", role.prefix()));
        }
    }

    fn add_envelope(&mut self, envelope: &Envelope) {
        self.add_address(Role::Sender, &envelope.mail_from);
        for r in envelope.recipients() {
            self.add_address(Role::Recipient, r);
        }
    }

    /// Parses only the header block; a message that does not parse still gets its envelope
    /// entries (parsing failures degrade indexing, never storage).
    fn add_headers(&mut self, raw: &[u8]) {
        let Some(msg) = MessageParser::new().parse_headers(raw) else {
            return;
        };
        if let Some(id) = msg.message_id() {
            self.message_ids.push(id.to_string());
        }
        let add_all = |entry: &mut IndexEntry, role, addr: Option<&Address>| {
            for a in addr.into_iter().flat_map(|a| a.iter()) {
                if let Some(addr) = a.address() {
                    entry.add_address(role, addr.as_bytes());
                }
            }
        };
        add_all(self, Role::Sender, msg.from());
        add_all(self, Role::Sender, msg.sender());
        add_all(self, Role::Recipient, msg.to());
        add_all(self, Role::Recipient, msg.cc());
        add_all(self, Role::Recipient, msg.bcc());
    }
}

/// The redb key-value index.
pub struct KvIndex {
    db: Database,
}

impl KvIndex {
    /// Opens or creates the index file; an index of another schema version is emptied.
    pub fn open(path: &Path) -> Result<KvIndex> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked(path.to_path_buf()),
            e => Error::Index(format!("{}: {e}", path.display())),
        })?;
        let index = KvIndex { db };
        let schema = index.meta(SCHEMA_KEY)?;
        if schema != Some(SCHEMA_VERSION) {
            index.clear()?;
        }
        Ok(index)
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
        {
            let mut meta = tx.open_table(META)?;
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
            meta.insert(APPLIED_KEY, 0)?;
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
        let key = format!("{}{}", role.prefix(), address.trim().to_lowercase());
        let tx = self.db.begin_read()?;
        let t = tx.open_multimap_table(ADDRESSES)?;
        let mut out = Vec::new();
        for v in t.get(key.as_str())? {
            out.push(v?.value());
        }
        Ok(out)
    }
}
