//! Keeps the search index caught up with the durable log on its own thread, woken by the
//! durable seq, so indexing never delays an acknowledgement or the opening of a store. Each
//! batch is one tantivy commit whose payload is the last log seq it applied; a store that
//! closes mid-backlog keeps what was committed and the next open continues from there.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tantivy::{IndexWriter, Searcher, Term};

use super::document::{build, Delivery, Summary};
use super::extract::MailFields;
use super::text_index::TextIndex;
use crate::index::kv::Location;
use crate::log::reader::{record_content, Dictionaries, Dictionary, Record, SegmentFiles};
use crate::log::record::LeafBody;
use crate::store::Shared;
use crate::{Error, Result};

/// Records applied per commit, at most.
const BATCH_RECORDS: usize = 20_000;
/// Message bytes read per commit, at most.
const BATCH_BYTES: usize = 256 << 20;

/// How long a run of batches without a document (audit records, checkpoints: a busy web
/// front door writes one audit record per request) leaves the committed payload behind.
/// Committing them would only move the payload's seq, yet each tantivy commit restarts its
/// indexing threads, fsyncs meta.json and reloads the searcher with cold document-store
/// caches; what is not committed is re-read (and again adds nothing) at the next open.
const PAYLOAD_EVERY: Duration = Duration::from_secs(60);

/// Where indexing continues, and the dictionaries met on the way.
pub(crate) struct CatchUp {
    /// Segment and offset of the record after the last applied one.
    position: Option<(u64, u64)>,
    /// Dictionaries seen in the log (the key-value index may not have them yet).
    dictionaries: HashMap<u64, Dictionary>,
    /// The seq in the last committed payload, and when this thread committed it (see
    /// [`PAYLOAD_EVERY`]).
    committed: u64,
    last_commit: Instant,
    /// Mail bytes indexed since freed memory was last given back (see [`TRIM_AFTER_BYTES`]).
    untrimmed: usize,
}

impl CatchUp {
    /// Indexing that continues after `committed`, the payload of the index's last commit.
    fn after(committed: u64) -> CatchUp {
        CatchUp {
            position: None,
            dictionaries: HashMap::new(),
            committed,
            last_commit: Instant::now(),
            untrimmed: 0,
        }
    }

    /// Commits what `writer` holds with `seq` as the payload.
    fn commit(&mut self, text: &TextIndex, writer: &mut IndexWriter, seq: u64) -> Result<()> {
        text.commit(writer, seq)?;
        self.committed = seq;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Makes the payload say `applied` (at close, after batches that were not committed).
    fn commit_payload(&mut self, text: &TextIndex, applied: u64) -> Result<()> {
        if self.committed >= applied {
            return Ok(());
        }
        let mut guard = text.writer();
        let writer = guard
            .as_mut()
            .ok_or_else(|| Error::Search("the search index is not open for writing".into()))?;
        self.commit(text, writer, applied)
    }
}

/// Dictionaries from the log as read so far, else from the store.
struct Dicts<'a> {
    seen: &'a HashMap<u64, Dictionary>,
    shared: &'a Shared,
}

impl Dictionaries for Dicts<'_> {
    fn dictionary(&self, seq: u64) -> std::result::Result<Dictionary, String> {
        match self.seen.get(&seq) {
            Some(d) => Ok(d.clone()),
            None => self.shared.dictionary(seq),
        }
    }
}

/// Extracts fields; a parser panic on hostile input degrades to an unparsed message instead
/// of stopping indexing for good.
fn extract(raw: &[u8]) -> MailFields {
    std::panic::catch_unwind(|| MailFields::extract(raw)).unwrap_or_default()
}

/// Applies every record up to `target` (which must be durable) to the search index, in
/// commits of at most `BATCH_RECORDS`; stops after a commit when the store is closing.
fn index_until(shared: &Shared, state: &mut CatchUp, target: u64) -> Result<()> {
    let text = &shared.text;
    let mut applied = text.applied();
    while applied < target {
        let log = shared.log_reader()?;
        let records = match state.position {
            Some((segment, offset)) => log.records_at(applied + 1, segment, offset)?,
            None => log.records_from(applied + 1)?,
        };
        let mut guard = text.writer();
        let writer = guard
            .as_mut()
            .ok_or_else(|| Error::Search("the search index is not open for writing".into()))?;
        let mut batch = Batch {
            text,
            searcher: text.searcher(),
            segments: &shared.segments,
            added: HashMap::new(),
        };
        let mut last = None;
        let mut count = 0;
        let mut bytes = 0;
        for record in records {
            let record = record?;
            if record.seq() > target {
                break;
            }
            match &record.leaf.body {
                LeafBody::Dictionary { .. } => {
                    if let Some(Ok(d)) = record.dictionary() {
                        state.dictionaries.insert(record.seq(), d);
                    }
                }
                LeafBody::Message { .. } => {
                    let dicts = Dicts {
                        seen: &state.dictionaries,
                        shared,
                    };
                    let raw = record_content(&record, &dicts)?;
                    bytes += raw.len();
                    state.untrimmed += raw.len();
                    batch.message(writer, &record, &raw)?;
                }
                LeafBody::Arrival { first_seq, .. } => {
                    let dicts = Dicts {
                        seen: &state.dictionaries,
                        shared,
                    };
                    batch.arrival(writer, &record, *first_seq, &dicts)?;
                }
                _ => {}
            }
            state.position = Some((
                record.location.segment,
                record.location.offset + record.location.len,
            ));
            last = Some(record.seq());
            count += 1;
            if record.seq() == target || count >= BATCH_RECORDS || bytes >= BATCH_BYTES {
                break;
            }
        }
        let Some(last) = last else {
            return Err(Error::Search(format!(
                "the log ends before seq {}, which was to be indexed",
                applied + 1
            )));
        };
        let closing = shared.durability.lock().shutdown;
        if !batch.added.is_empty() || closing || state.last_commit.elapsed() >= PAYLOAD_EVERY {
            state.commit(text, writer, last)?;
        }
        applied = last;
        text.note_applied(applied);
        if closing {
            // Closing: what is committed stays, the next open catches up the rest.
            break;
        }
    }
    Ok(())
}

/// A message document added in the current batch (not yet committed).
#[derive(Clone)]
struct Added {
    location: Location,
    size: u64,
    deliveries: Vec<Delivery>,
}

/// One commit's worth of changes.
struct Batch<'a> {
    text: &'a TextIndex,
    /// The last commit: where messages of earlier batches are found for their arrivals.
    searcher: Searcher,
    segments: &'a SegmentFiles,
    added: HashMap<u64, Added>,
}

impl Batch<'_> {
    fn message(&mut self, writer: &IndexWriter, record: &Record, raw: &[u8]) -> Result<()> {
        let seq = record.seq();
        let added = Added {
            location: record.location,
            size: raw.len() as u64,
            deliveries: vec![Delivery::of(&record.leaf)],
        };
        self.add(writer, seq, &extract(raw), &added)?;
        self.added.insert(seq, added);
        Ok(())
    }

    /// A later delivery of message `first_seq`: its document is replaced by one that also
    /// carries this delivery's envelope.
    fn arrival(
        &mut self,
        writer: &IndexWriter,
        record: &Record,
        first_seq: u64,
        dicts: &dyn Dictionaries,
    ) -> Result<()> {
        let mut added = match self.added.get(&first_seq) {
            Some(a) => a.clone(),
            None => {
                let summary: Summary = self.text.summary_of(&self.searcher, first_seq)?.ok_or_else(|| {
                    Error::Search(format!(
                        "arrival seq {} refers to message seq {first_seq}, which is not in the search index",
                        record.seq()
                    ))
                })?;
                Added {
                    location: summary.location(),
                    size: summary.size,
                    deliveries: summary.deliveries,
                }
            }
        };
        added.deliveries.push(Delivery::of(&record.leaf));
        let message = self.segments.read_at(&added.location, first_seq)?;
        let raw = record_content(&message, dicts)?;
        writer.delete_term(Term::from_field_u64(self.text.fields.seq, first_seq));
        self.add(writer, first_seq, &extract(&raw), &added)?;
        self.added.insert(first_seq, added);
        Ok(())
    }

    fn add(&self, writer: &IndexWriter, seq: u64, mail: &MailFields, added: &Added) -> Result<()> {
        let (doc, _) = build(
            &self.text.fields,
            mail,
            seq,
            added.location,
            added.size,
            added.deliveries.clone(),
        );
        writer.add_document(doc)?;
        Ok(())
    }
}

/// How long the thread lets records accumulate before indexing them: briefly when mail
/// trickles in (a search right after an append waits for the index)…
const GATHER: Duration = Duration::from_millis(50);
/// …and longer under load, when every commit (segment files, fsyncs, merges) would otherwise
/// compete with intake for the cores.
const GATHER_UNDER_LOAD: Duration = Duration::from_millis(1000);
/// A batch at least this large (about 1,000 records a second or more) means load.
const LOAD_BATCH: u64 = 100;

/// Nice value of the search indexer and the tantivy threads it starts: when intake and
/// indexing compete for the cores, acknowledgements come first and the derived index catches
/// up in the gaps (searches wait for it, so answers stay complete).
const NICE: i32 = 10;

/// Lowers the calling thread's CPU priority (on Linux, nice is per thread and inherited by
/// the threads it creates). Failing to is harmless.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id; no memory is passed.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICE);
    }
}

/// Mail indexed (bytes) after which freed memory is given back to the system: batches of
/// audit records and checkpoints alone (a busy web front door) allocate next to nothing, and
/// trimming after them would only make the next searches fault their memory in again.
const TRIM_AFTER_BYTES: usize = 64 << 20;

/// Gives memory freed after a large batch (tantivy's indexing arenas, up to its memory
/// budget) back to the system: glibc keeps freed memory for reuse, so catching up a large
/// backlog would otherwise leave the server hundreds of MB larger for as long as it runs.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and returns the allocator's own free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The search indexer thread: sets up the writer (reporting on `started`), then follows the
/// durable seq.
pub(crate) fn run(shared: &Shared, started: std::sync::mpsc::SyncSender<Result<()>>) {
    lower_priority();
    let writer = shared.text.start_writer();
    let failed = writer.is_err();
    let _ = started.send(writer);
    if failed {
        return;
    }
    let mut applied = shared.text.applied();
    let mut state = CatchUp::after(applied);
    let mut gather = GATHER;
    loop {
        let (synced, shutdown) =
            shared
                .durability
                .wait_for_batch(applied, gather, Duration::from_millis(500), false);
        gather = match synced.saturating_sub(applied) >= LOAD_BATCH {
            true => GATHER_UNDER_LOAD,
            false => GATHER,
        };
        if synced > applied {
            // A panic (a tantivy bug, say) must not leave searches waiting forever.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                index_until(shared, &mut state, synced)
            }))
            .unwrap_or_else(|_| Err(Error::Search("the search indexer panicked".into())));
            match result {
                Ok(()) => {
                    applied = shared.text.applied();
                    if state.untrimmed >= TRIM_AFTER_BYTES {
                        release_free_memory();
                        state.untrimmed = 0;
                    }
                }
                Err(e) => {
                    applied = shared.text.applied();
                    let rolled_back = shared.text.rollback();
                    shared.text.note_failure(match rolled_back {
                        Ok(()) => e.to_string(),
                        Err(r) => format!("{e} (and the rollback failed: {r})"),
                    });
                    if shutdown {
                        return;
                    }
                    state.position = None;
                    state.dictionaries.clear();
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        if shutdown {
            if let Err(e) = state.commit_payload(&shared.text, applied) {
                shared.text.note_failure(e.to_string());
            }
            return;
        }
    }
}
