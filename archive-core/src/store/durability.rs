//! Group commit: an append returns once its record and every record before it are fsynced.
//!
//! Whoever finds no fsync in progress becomes the leader: it notes the last written seq,
//! fsyncs the active segment (sealed segments were fsynced when sealed) and wakes everyone
//! whose record that covered. Appenders that arrive meanwhile wait and share the next fsync,
//! so concurrent sessions pay for one fsync per batch, not one each.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::{Error, Result};

#[derive(Debug, Default)]
pub(crate) struct SyncState {
    /// Every record up to here is durable.
    pub synced: u64,
    leader_active: bool,
    /// A failed fsync: the page cache may have dropped the data, so nothing after it can be
    /// acknowledged until the store is reopened (and recovery re-reads what is really on disk).
    failed: Option<String>,
    /// Set when the store closes; background threads exit.
    pub shutdown: bool,
    /// A reader waits for the key-value indexer: it stops gathering (see `wait_for_batch`).
    index_awaited: bool,
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
    /// fsyncs of segment files performed for acknowledgements.
    pub fsyncs: AtomicU64,
}

impl Durability {
    pub fn new(synced: u64) -> Durability {
        Durability {
            state: Mutex::new(SyncState {
                synced,
                ..SyncState::default()
            }),
            ..Durability::default()
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Last durable seq.
    pub fn synced(&self) -> u64 {
        self.lock().synced
    }

    /// Waits until `seq` is durable. `snapshot` prepares the batch (appends its checkpoint)
    /// and returns the active segment and the last seq written to it; it is called by the
    /// leader only. A failed `snapshot` (a full disk, say) fails this wait only: the next
    /// waiter leads and tries again.
    pub fn wait(&self, seq: u64, snapshot: impl Fn() -> Result<Option<(Arc<File>, u64)>>) -> Result<()> {
        let mut s = self.lock();
        loop {
            if let Some(why) = &s.failed {
                return Err(Error::Unusable(why.clone()));
            }
            if s.synced >= seq {
                return Ok(());
            }
            if s.leader_active {
                s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            s.leader_active = true;
            drop(s);
            let result = match snapshot() {
                Ok(Some((file, target))) => {
                    self.fsyncs.fetch_add(1, Ordering::Relaxed);
                    file.sync_data().map(|()| target)
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
            s.leader_active = false;
            match result {
                Ok(target) => s.synced = s.synced.max(target),
                Err(e) => s.failed = Some(format!("fsync failed: {e}")),
            }
            self.changed.notify_all();
            self.progress.notify_all();
        }
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

    /// Tells background threads to finish.
    pub fn shut_down(&self) {
        self.lock().shutdown = true;
        self.changed.notify_all();
        self.progress.notify_all();
        self.stopping.notify_all();
    }
}
