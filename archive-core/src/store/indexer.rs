//! Keeps the key-value index caught up with the durable log, on its own thread so indexing
//! never delays an acknowledgement. Records this process wrote come with their entries from
//! the writer (`FreshEntries`); the rest are read back from the log: the same code catches up
//! at open and rebuilds on reindex.

use std::time::{Duration, Instant};

use crate::index::kv::IndexEntry;
use crate::log::reader::{record_content, Dictionaries, Dictionary};
use crate::log::record::RecordKind;
use crate::store::Shared;
use crate::{Error, Result};

/// Records applied per index transaction, at most.
const BATCH_RECORDS: usize = 2000;
/// Message bytes parsed per index transaction, at most.
const BATCH_BYTES: usize = 64 << 20;
/// How often the index is made durable while running (it is always made durable at close).
const PERSIST_EVERY: Duration = Duration::from_secs(5);

/// Where the indexer reads next: the segment and offset of record `applied + 1`.
#[derive(Default)]
pub(crate) struct Cursor {
    position: Option<(u64, u64)>,
}

/// Applies every record up to `target` (which must be durable) to the key-value index.
pub(crate) fn index_until(shared: &Shared, cursor: &mut Cursor, target: u64) -> Result<()> {
    let applied = shared.index.applied_seq()?;
    let fresh = shared.take_fresh(applied, target);
    let from_log = fresh.first().map_or(target, |e| e.seq() - 1);
    index_from_log(shared, cursor, applied, from_log)?;
    for batch in fresh.chunks(BATCH_RECORDS) {
        shared.index.apply(batch, false)?;
        if let Some(last) = batch.last() {
            cursor.position = last.location().map(|l| (l.segment, l.offset + l.len));
            shared.note_indexed(last.seq());
        }
    }
    Ok(())
}

/// Applies the records after `applied` up to `target`, read from the log.
fn index_from_log(shared: &Shared, cursor: &mut Cursor, mut applied: u64, target: u64) -> Result<()> {
    while applied < target {
        let log = shared.log_reader()?;
        let records = match cursor.position {
            Some((segment, offset)) => log.records_at(applied + 1, segment, offset)?,
            None => log.records_from(applied + 1)?,
        };
        let mut batch = Vec::new();
        let mut bytes = 0;
        // A dictionary and the first message compressed with it can share a batch: the
        // message must find the dictionary before the index (where `shared` looks) has it.
        let mut dictionaries = BatchDictionaries {
            batch: Vec::new(),
            shared,
        };
        for record in records {
            let record = record?;
            if record.seq() > target {
                break;
            }
            if let Some(Ok(d)) = record.dictionary() {
                dictionaries.batch.push((record.seq(), d));
            }
            let content = match record.kind() {
                RecordKind::Message => Some(record_content(&record, &dictionaries)?),
                _ => None,
            };
            bytes += content.as_ref().map_or(0, Vec::len);
            batch.push(IndexEntry::from_record(
                &record.leaf,
                record.chain,
                record.location,
                content.as_deref(),
            ));
            cursor.position = Some((
                record.location.segment,
                record.location.offset + record.location.len,
            ));
            if record.seq() == target || batch.len() >= BATCH_RECORDS || bytes >= BATCH_BYTES {
                break;
            }
        }
        let Some(last) = batch.last().map(IndexEntry::seq) else {
            return Err(Error::Index(format!(
                "the log ends before seq {}, which was to be indexed",
                applied + 1
            )));
        };
        shared.index.apply(&batch, false)?;
        applied = last;
        shared.note_indexed(applied);
    }
    Ok(())
}

/// Dictionaries of the current batch, then those already indexed.
struct BatchDictionaries<'a> {
    batch: Vec<(u64, Dictionary)>,
    shared: &'a Shared,
}

impl Dictionaries for BatchDictionaries<'_> {
    fn dictionary(&self, seq: u64) -> std::result::Result<Dictionary, String> {
        match self.batch.iter().find(|(s, _)| *s == seq) {
            Some((_, d)) => Ok(d.clone()),
            None => self.shared.dictionary_of(seq, false),
        }
    }
}

/// How long the thread lets records accumulate before indexing them.
const GATHER: Duration = Duration::from_millis(50);

/// The indexer thread's loop.
pub(crate) fn run(shared: &Shared) {
    let mut cursor = Cursor::default();
    let mut last_persist = Instant::now();
    let mut applied = shared.index.applied_seq().unwrap_or(0);
    loop {
        let (synced, shutdown) =
            shared
                .durability
                .wait_for_batch(applied, GATHER, Duration::from_millis(500), true);
        if synced > applied {
            match index_until(shared, &mut cursor, synced) {
                Ok(()) => applied = synced,
                Err(e) => {
                    shared.note_index_failure(e.to_string());
                    if shutdown {
                        return;
                    }
                    cursor = Cursor::default();
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        if shutdown || last_persist.elapsed() >= PERSIST_EVERY {
            if let Err(e) = shared.index.persist() {
                shared.note_index_failure(e.to_string());
            }
            last_persist = Instant::now();
        }
        if shutdown && applied >= shared.durability.synced() {
            return;
        }
    }
}
