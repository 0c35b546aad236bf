//! Group commit: an append returns once its record and every record before it are fsynced.
//!
//! Whoever finds no fsync in progress becomes the leader: it notes the last written seq,
//! fsyncs the active segment (sealed segments were fsynced when sealed) and wakes everyone
//! whose record that covered. Appenders that arrive meanwhile wait and share the next fsync,
//! so concurrent sessions pay for one fsync per batch, not one each.
//!
//! A failed fsync is not retried: the kernel may have dropped the data it could not write
//! and report success for the next fsync of the same file. Instead the log's end goes back
//! to the last durable point (see `Writer::rewind`): the records after it were never
//! acknowledged, their appenders get an error, and appending continues from there without
//! a restart. Each rewind starts a new *generation*; an appender learns whether its record
//! survived from the generation it was written in.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::metrics::{COMMIT_RECORDS, FSYNC_SECONDS};
use crate::store::writer::{DurablePoint, Written};
use crate::{Error, Result};

/// A segment file with the fsyncs that cover it. Once an fsync of the file failed, every
/// later one fails too: the kernel reports a write-back error to one fsync only, so the
/// group-commit leader and a segment seal (both fsync the same file) must not take a later
/// success for durability of what was written before the failure.
#[derive(Debug)]
pub(crate) struct SyncedFile {
    file: File,
    failure: Mutex<Option<String>>,
}

impl SyncedFile {
    pub fn new(file: File) -> SyncedFile {
        SyncedFile {
            file,
            failure: Mutex::new(None),
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// fsync (`all`) or fdatasync of the file; fails for good after one failure.
    pub fn sync(&self, all: bool) -> std::io::Result<()> {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &*failure {
            return Err(std::io::Error::other(format!("an earlier fsync failed: {why}")));
        }
        let result = if all {
            self.file.sync_all()
        } else {
            self.file.sync_data()
        };
        if let Err(e) = &result {
            *failure = Some(e.to_string());
        }
        result
    }

    /// A file whose fsyncs fail, for tests of what follows a failure.
    #[cfg(test)]
    pub fn failing(file: File) -> SyncedFile {
        SyncedFile {
            file,
            failure: Mutex::new(Some("injected".into())),
        }
    }
}

/// What a group commit's leader makes durable: the active segment and the log's state after
/// its last record, in the generation it was taken.
pub(crate) struct Batch {
    pub file: Arc<SyncedFile>,
    pub point: DurablePoint,
    pub generation: u64,
}

/// Rewinds remembered for appenders still waiting from before them.
const REWINDS_KEPT: usize = 64;

#[derive(Default)]
pub(crate) struct SyncState {
    /// Every record up to here is durable.
    pub synced: u64,
    leader_active: bool,
    /// A failed fsync whose rewind has not succeeded yet: nothing is acknowledged meanwhile.
    failed: Option<String>,
    /// The log's state right after record `synced`: where a rewind goes back to.
    point: DurablePoint,
    /// Bumped by every rewind.
    generation: u64,
    /// The newest rewinds: the generation each ended and the seq it went back to.
    rewinds: VecDeque<(u64, u64)>,
    /// Set when the store closes; background threads exit.
    pub shutdown: bool,
    /// A reader waits for the key-value indexer: it stops gathering (see `wait_for_batch`).
    index_awaited: bool,
    /// The newest record whose commit was asked for ahead of its waiter (see
    /// [`Durability::commit_soon`]), until the committer thread takes it.
    commit_wanted: Option<Written>,
}

impl SyncState {
    /// How the wait for `written` ends if it ends without an fsync: `Some(Ok)` once it is
    /// durable, `Some(Err)` when it never will be (a rewind cut it, or an fsync failure is
    /// being dealt with), `None` while it waits for a group commit.
    fn settled(&self, written: Written) -> Option<Result<()>> {
        if written.generation != self.generation {
            return Some(self.survived(written));
        }
        if self.synced >= written.seq {
            return Some(Ok(()));
        }
        self.failed.as_ref().map(|why| Err(Error::Unusable(why.clone())))
    }

    /// Whether a record written before a rewind was kept by it: only records up to the
    /// durable point it went back to were.
    fn survived(&self, written: Written) -> Result<()> {
        match self.rewinds.iter().find(|(g, _)| *g == written.generation) {
            Some((_, floor)) if written.seq <= *floor => Ok(()),
            Some((_, floor)) => Err(Error::Unusable(format!(
                "record {} was not made durable: an fsync failed and the log went back to record {floor}",
                written.seq
            ))),
            None => Err(Error::Unusable(format!(
                "record {} was written before the log went back to an earlier record",
                written.seq
            ))),
        }
    }
}

/// The group-commit coordinator.
#[derive(Default)]
pub(crate) struct Durability {
    state: Mutex<SyncState>,
    /// Appenders waiting for their record to become durable.
    changed: Condvar,
    /// Background threads waiting for the durable seq to move. Separate from `changed`, and
    /// from `stopping`, so that an fsync (hundreds a second under load) wakes only threads
    /// with something to do.
    progress: Condvar,
    /// Background threads sleeping until a deadline or shutdown.
    stopping: Condvar,
    /// The committer thread, waiting for [`Durability::commit_soon`].
    wanted: Condvar,
    /// fsyncs of segment files performed for acknowledgements.
    pub fsyncs: AtomicU64,
    /// Why the newest group-commit fsync failed, until one succeeds again (readiness).
    fsync_failure: Mutex<Option<String>>,
}

impl Durability {
    pub fn new(point: DurablePoint) -> Durability {
        Durability {
            state: Mutex::new(SyncState {
                synced: point.seq,
                point,
                ..SyncState::default()
            }),
            ..Durability::default()
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`Durability::wait`] for `written` if it would not block: `None` while the record
    /// waits for a group commit.
    pub fn settled(&self, written: Written) -> Option<Result<()>> {
        self.lock().settled(written)
    }

    /// Last durable seq.
    pub fn synced(&self) -> u64 {
        self.lock().synced
    }

    /// The log's state after the last durable record.
    pub fn point(&self) -> DurablePoint {
        self.lock().point.clone()
    }

    /// Waits until the record `written` is durable. `snapshot` prepares the batch (appends
    /// its checkpoint) and returns the active segment and the log's state after its last
    /// record; it is called by the leader only. A failed `snapshot` (a full disk, say) fails
    /// this wait only: the next waiter leads and tries again. After a failed fsync the leader
    /// calls `rewind`, which goes back to the durable point (and calls [`Durability::rewound`])
    /// or leaves the failure in place for the next append to retry.
    pub fn wait(
        &self,
        written: Written,
        snapshot: impl Fn() -> Result<Option<Batch>>,
        rewind: impl Fn(u64),
    ) -> Result<()> {
        let mut s = self.lock();
        loop {
            if let Some(settled) = s.settled(written) {
                return settled;
            }
            if s.leader_active {
                s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            s.leader_active = true;
            drop(s);
            let result = match snapshot() {
                Ok(Some(batch)) => {
                    self.fsyncs.fetch_add(1, Ordering::Relaxed);
                    let started = std::time::Instant::now();
                    let synced = batch.file.sync(false).map(|()| batch);
                    metrics::histogram!(FSYNC_SECONDS).record(started.elapsed().as_secs_f64());
                    synced
                }
                // No segment is open for appending only when a roll-over failed after taking
                // the full one: records before `seq` may not be on disk, so this is no fsync.
                Ok(None) => Err(std::io::Error::other("no segment is open for appending")),
                Err(e) => {
                    s = self.lock();
                    s.leader_active = false;
                    self.changed.notify_all();
                    return Err(e);
                }
            };
            s = self.lock();
            match result {
                // A batch taken before a rewind says nothing about the log after it; and
                // once a rewind is under way (`failed`), the durable point must stay where
                // the rewind read it, so what this fsync covered is not acknowledged (the
                // rewind may cut it).
                Ok(batch) if batch.generation == s.generation && s.failed.is_none() => {
                    if batch.point.seq > s.synced {
                        // Records per fsync: what group commit saves (one sample per fsync).
                        metrics::histogram!(COMMIT_RECORDS).record((batch.point.seq - s.synced) as f64);
                        s.synced = batch.point.seq;
                        s.point = batch.point;
                    }
                    self.note_fsync(None);
                }
                Ok(_) => {}
                Err(e) => {
                    self.note_fsync(Some(e.to_string()));
                    let generation = s.generation;
                    s.failed = Some(format!("fsync failed: {e}"));
                    drop(s);
                    rewind(generation);
                    s = self.lock();
                }
            }
            s.leader_active = false;
            self.changed.notify_all();
            self.progress.notify_all();
        }
    }

    fn note_fsync(&self, failure: Option<String>) {
        *self.fsync_failure.lock().unwrap_or_else(|p| p.into_inner()) = failure;
    }

    /// Why the store cannot acknowledge now, if it cannot: a rewind is under way or failed,
    /// or the newest group-commit fsync failed (until one succeeds; the checkpoint timer
    /// retries within its interval).
    pub fn trouble(&self) -> Option<String> {
        if let Some(why) = &self.lock().failed {
            return Some(why.clone());
        }
        let failure = self.fsync_failure.lock().unwrap_or_else(|p| p.into_inner());
        failure
            .as_ref()
            .map(|e| format!("the last fsync of the log failed: {e}"))
    }

    /// Stops acknowledgements until [`Durability::rewound`]: the log's end is in doubt (a
    /// rewind is about to read the durable point, which must not move meanwhile).
    pub fn fail(&self, why: &str) {
        self.lock().failed.get_or_insert_with(|| why.to_string());
        self.changed.notify_all();
    }

    /// The log went back to the durable point in generation `generation`: appenders of that
    /// generation whose records came after it learn that they were not kept.
    pub fn rewound(&self, generation: u64) {
        let mut s = self.lock();
        if s.generation != generation {
            return;
        }
        let floor = s.synced;
        if s.rewinds.len() == REWINDS_KEPT {
            s.rewinds.pop_front();
        }
        s.rewinds.push_back((generation, floor));
        s.generation += 1;
        s.failed = None;
        self.changed.notify_all();
    }

    /// Blocks until the durable seq passes `seen`, shutdown, or `timeout`.
    pub fn wait_for_progress(&self, seen: u64, timeout: Duration) -> (u64, bool) {
        let s = self.lock();
        let (s, _) = self
            .progress
            .wait_timeout_while(s, timeout, |s| s.synced <= seen && !s.shutdown)
            .unwrap_or_else(|p| p.into_inner());
        (s.synced, s.shutdown)
    }

    /// Sleeps for `duration` or until shutdown; returns whether shutting down.
    pub fn sleep(&self, duration: Duration) -> bool {
        let s = self.lock();
        let (s, _) = self
            .stopping
            .wait_timeout_while(s, duration, |s| !s.shutdown)
            .unwrap_or_else(|p| p.into_inner());
        s.shutdown
    }

    /// Like `wait_for_progress`, then lingers `gather` (unless shutting down) so that derived
    /// indexes apply records in batches instead of waking on every fsync: under load that is
    /// hundreds of tiny commits a second competing with intake for the cores.
    ///
    /// With `awaitable` (the key-value indexer), the lingering ends as soon as a reader says
    /// it waits ([`Durability::await_index`]): a view or read of a fresh record would
    /// otherwise wait out the whole `gather`.
    pub fn wait_for_batch(
        &self,
        seen: u64,
        gather: Duration,
        timeout: Duration,
        awaitable: bool,
    ) -> (u64, bool) {
        let (synced, shutdown) = self.wait_for_progress(seen, timeout);
        if synced <= seen || shutdown {
            return (synced, shutdown);
        }
        let s = self.lock();
        let (mut s, _) = self
            .stopping
            .wait_timeout_while(s, gather, |s| !(s.shutdown || awaitable && s.index_awaited))
            .unwrap_or_else(|p| p.into_inner());
        if awaitable {
            s.index_awaited = false;
        }
        (s.synced, s.shutdown)
    }

    /// A reader waits for the key-value indexer to apply what is durable: it should not
    /// linger.
    pub fn await_index(&self) {
        let mut s = self.lock();
        if !s.index_awaited {
            s.index_awaited = true;
            self.stopping.notify_all();
        }
    }

    /// Asks the committer thread to make `written` durable now, so that its fsync overlaps
    /// what the caller does before it waits for the record itself (which then usually finds
    /// it durable). Never blocks on the fsync.
    pub fn commit_soon(&self, written: Written) {
        let mut s = self.lock();
        if s.commit_wanted.is_none_or(|w| w.seq < written.seq) {
            s.commit_wanted = Some(written);
        }
        self.wanted.notify_one();
    }

    /// The committer thread's next record to make durable (see [`Durability::commit_soon`]);
    /// `None` once the store shuts down.
    pub fn next_commit_wanted(&self) -> Option<Written> {
        let mut s = self.lock();
        loop {
            if s.shutdown {
                return None;
            }
            if let Some(w) = s.commit_wanted.take() {
                return Some(w);
            }
            s = self.wanted.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Tells background threads to finish.
    pub fn shut_down(&self) {
        self.lock().shutdown = true;
        self.changed.notify_all();
        self.progress.notify_all();
        self.stopping.notify_all();
        self.wanted.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(file: SyncedFile, seq: u64, generation: u64) -> Batch {
        Batch {
            file: Arc::new(file),
            point: DurablePoint {
                seq,
                ..DurablePoint::default()
            },
            generation,
        }
    }

    fn written(seq: u64, generation: u64) -> Written {
        Written { seq, generation }
    }

    /// After a failed fsync the kernel may report success for the next one: the failure
    /// sticks to the file, so a later fsync of it acknowledges nothing.
    #[test]
    fn an_fsync_failure_sticks_to_its_file() {
        let failing = SyncedFile::failing(tempfile::tempfile().unwrap());
        assert!(failing.sync(false).is_err());
        assert!(failing.sync(true).is_err());
        let good = SyncedFile::new(tempfile::tempfile().unwrap());
        assert!(good.sync(false).is_ok());
    }

    /// A failed fsync fails its waiter and calls for a rewind; records written before the
    /// rewind are acknowledged only if they were durable at its point, whatever later fsyncs
    /// of the new generation cover.
    #[test]
    fn records_of_a_rewound_generation_are_not_acknowledged() {
        let d = Durability::new(DurablePoint {
            seq: 5,
            ..DurablePoint::default()
        });
        let rewinds = std::sync::atomic::AtomicU64::new(0);
        let failed = d.wait(
            written(7, 0),
            || {
                Ok(Some(batch(
                    SyncedFile::failing(tempfile::tempfile().unwrap()),
                    7,
                    0,
                )))
            },
            |generation| {
                rewinds.fetch_add(1, Ordering::Relaxed);
                d.rewound(generation);
            },
        );
        assert!(failed.is_err());
        assert_eq!(rewinds.load(Ordering::Relaxed), 1);
        // The new generation's records 6..9 become durable; the old record 7 does not come
        // back with them, the old record 5 was durable before.
        let good = || Ok(Some(batch(SyncedFile::new(tempfile::tempfile().unwrap()), 9, 1)));
        d.wait(written(9, 1), good, |_| panic!("no failure")).unwrap();
        assert_eq!(d.synced(), 9);
        assert!(d.wait(written(7, 0), good, |_| panic!("no failure")).is_err());
        assert!(d.wait(written(5, 0), good, |_| panic!("no failure")).is_ok());
    }

    /// A seal fails (and a rewind begins) while a group commit's fsync is in flight: that
    /// fsync's success does not move the durable point the rewind goes back to, and its
    /// waiter is not acknowledged.
    #[test]
    fn a_batch_finishing_while_a_rewind_begins_moves_nothing() {
        let d = Durability::new(DurablePoint {
            seq: 2,
            ..DurablePoint::default()
        });
        let waited = d.wait(
            written(5, 0),
            || {
                let batch = batch(SyncedFile::new(tempfile::tempfile().unwrap()), 5, 0);
                d.fail("sealing the segment failed");
                Ok(Some(batch))
            },
            |_| panic!("this fsync did not fail"),
        );
        assert!(waited.is_err());
        assert_eq!(d.synced(), 2);
        assert_eq!(d.point().seq, 2);
    }

    /// A batch taken before a rewind finishes after it: its fsync says nothing about the log
    /// of the new generation, so the durable seq does not move.
    #[test]
    fn a_batch_of_an_older_generation_moves_nothing() {
        let d = Durability::new(DurablePoint::default());
        let _ = d.wait(
            written(3, 0),
            || {
                Ok(Some(batch(
                    SyncedFile::failing(tempfile::tempfile().unwrap()),
                    3,
                    0,
                )))
            },
            |generation| d.rewound(generation),
        );
        let calls = std::sync::atomic::AtomicU64::new(0);
        d.wait(
            written(1, 1),
            || {
                let stale = calls.fetch_add(1, Ordering::Relaxed) == 0;
                let (seq, generation) = if stale { (8, 0) } else { (1, 1) };
                Ok(Some(batch(
                    SyncedFile::new(tempfile::tempfile().unwrap()),
                    seq,
                    generation,
                )))
            },
            |_| panic!("no failure"),
        )
        .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(d.synced(), 1);
    }
}
