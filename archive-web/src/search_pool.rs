//! The web's search pool: searches run on a fixed set of threads (one per core by default,
//! `[web] search_threads`), fed by a bounded queue (`search_queue`; a search past it is
//! answered 429 `busy`). A search is CPU work: more of them at once than cores only makes
//! each slower, and tokio's blocking pool would run up to 512 at once, each on whichever of
//! its threads wakes first — a cold one, with cold caches. Here the threads stay few and warm,
//! and a search never waits out its audit record's fsync on one of them: the pool hands the
//! answer back held in an [`AuditedAccess`], and the request waits for the commit off the pool.
//!
//! Few threads must not let a few slow searches (facets over millions of messages, or a
//! query that runs into the 30 s limit) hold up everyone's: a search still queued after
//! [`SPILL_AFTER`] runs on tokio's blocking pool instead, as every search did before the pool
//! — up to twice the pool's threads at once, and the pool's threads per user.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use archive_core::access::PerUser;
use archive_core::AuditedAccess;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use crate::error::{blocking, ApiError};

/// A search waiting for a thread.
type Job = Box<dyn FnOnce() + Send>;

/// Seconds a client is told to wait when the queue is full.
const BUSY_RETRY_SECS: u64 = 1;

/// How long a search waits in the queue before it runs on a thread of its own: longer than
/// a busy pool's queue takes to move (32 clients of 4 ms searches on two threads: ~60 ms),
/// short enough that slow searches holding every pool thread delay others only this much.
pub const SPILL_AFTER: Duration = Duration::from_millis(250);

/// Threads that run searches, and their queue. The threads end once the pool is dropped and
/// the queue is empty.
pub struct SearchPool {
    queue: Sender<Job>,
    threads: usize,
    spill_after: Duration,
    /// Searches each user has queued or running: one user may hold a quarter of the queue
    /// (at least one search per thread), so that one user's many connections cannot fill it
    /// and get everyone else's searches refused.
    per_user: Arc<PerUser>,
    /// Searches running on threads of their own (spilled): at most twice as many as the
    /// pool's threads in all, so a flood of slow searches runs on at most three times the
    /// cores' worth of threads, and at most as many as the pool's threads per user, so one
    /// user cannot take them all. A search that finds no spill place waits for the pool.
    spilled: Arc<tokio::sync::Semaphore>,
    spilled_per_user: Arc<PerUser>,
}

/// A search and where its answer goes.
type Work<T> = (Box<dyn FnOnce() -> T + Send>, oneshot::Sender<T>);

/// A [`Work`] taken once, by a pool thread or by the request when it stops waiting for one.
type Claim<T> = Arc<Mutex<Option<Work<T>>>>;

fn take<T>(claim: &Claim<T>) -> Option<Work<T>> {
    claim.lock().unwrap_or_else(|p| p.into_inner()).take()
}

impl SearchPool {
    /// Starts `threads` threads (0: one per core) behind a queue of `queue` searches.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<SearchPool> {
        SearchPool::start_spilling_after(threads, queue, SPILL_AFTER)
    }

    fn start_spilling_after(
        threads: usize,
        queue: usize,
        spill_after: Duration,
    ) -> std::io::Result<SearchPool> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let (sender, receiver) = bounded::<Job>(queue);
        for i in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("web-search-{i}"))
                .spawn(move || run_jobs(&receiver))?;
        }
        Ok(SearchPool {
            queue: sender,
            threads,
            spill_after,
            per_user: Arc::new(PerUser::new((queue / 4).max(threads))),
            spilled: Arc::new(tokio::sync::Semaphore::new(2 * threads)),
            spilled_per_user: Arc::new(PerUser::new(threads)),
        })
    }

    /// Its threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `access`, a search of `user`'s, on a pool thread; then waits for its audit record
    /// off the pool (on a blocking thread, only if the record is not durable by then, which is
    /// rare: its fsync started before the search). 429 `busy` when the queue is full, or when
    /// `user` has as many searches queued or running as one user may.
    pub async fn run<T: Send + 'static>(
        &self,
        user: &str,
        access: impl FnOnce() -> Result<AuditedAccess<T>, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let held = self.run_job(user, access).await??;
        match held.ready() {
            Ok(found) => found.map_err(ApiError::store),
            Err(pending) => blocking(move || pending.durable().map_err(ApiError::store)).await,
        }
    }

    /// Runs `work` on a pool thread, or on a blocking thread of its own once it has waited
    /// [`SPILL_AFTER`] in the queue; counted as one of `user`'s searches until it has run.
    async fn run_job<T: Send + 'static>(
        &self,
        user: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot = self.per_user.enter(user).ok_or_else(|| {
            ApiError::busy(
                format!(
                    "you have {} searches running or waiting, as many as one user may; try again shortly",
                    self.per_user.limit()
                ),
                BUSY_RETRY_SECS,
            )
        })?;
        let work = move || {
            let _slot = slot;
            work()
        };
        let (answer, mut answered) = oneshot::channel();
        let claim: Claim<T> = Arc::new(Mutex::new(Some((Box::new(work), answer))));
        let queued = claim.clone();
        self.submit(Box::new(move || {
            // A request that went away while its search waited (the client gave up) costs
            // no search, and leaves no audit record of one.
            if let Some((work, answer)) = take(&queued).filter(|(_, answer)| !answer.is_closed()) {
                let _ = answer.send(work());
            }
        }))?;
        let answer = match tokio::time::timeout(self.spill_after, &mut answered).await {
            Ok(answer) => answer,
            Err(_) => {
                // Not started: every pool thread is busy with something slow. It runs on a
                // thread of its own if there is a spill place for it and for its user; else
                // it waits for the pool. (Its queue slot is freed when a pool thread reaches
                // it and finds nothing to do.)
                let places = self.spilled.clone().try_acquire_owned().ok().and_then(|all| {
                    let mine = self.spilled_per_user.enter(user)?;
                    Some((all, mine))
                });
                if let Some(places) = places {
                    if let Some((work, answer)) = take(&claim) {
                        tokio::task::spawn_blocking(move || {
                            let found = work();
                            drop(places);
                            let _ = answer.send(found);
                        });
                    }
                }
                answered.await
            }
        };
        // A panicked search drops its sender: answered as the bug it is, without details.
        answer.map_err(|_| ApiError::task_failed())
    }

    /// Queues `job`, or refuses it when the queue is full.
    fn submit(&self, job: Job) -> Result<(), ApiError> {
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ApiError::busy(
                "the server has as many searches waiting as it queues; try again shortly",
                BUSY_RETRY_SECS,
            )),
            Err(TrySendError::Disconnected(_)) => Err(ApiError::unavailable("the server is stopping")),
        }
    }
}

/// A pool thread: takes searches off the queue until the pool is gone. A search that panics
/// ends only itself (its request gets a 500), not the thread.
fn run_jobs(queue: &Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    #[test]
    fn a_full_queue_is_refused_and_a_panic_ends_only_its_search() {
        let pool = SearchPool::start(1, 1).unwrap();
        assert_eq!(pool.threads(), 1);
        // The thread is held by the first job, the queue by the second: the third is refused.
        let held = hold_the_thread(&pool);
        // The queue has room again once the thread has taken the first job off it.
        let (took, taken) = std::sync::mpsc::channel();
        submit_when_room(&pool, || {
            let probe = took.clone();
            Box::new(move || probe.send(()).unwrap())
        });
        let refused = pool.submit(Box::new(|| {})).unwrap_err();
        assert_eq!(refused.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.retry_after, Some(BUSY_RETRY_SECS));
        held.wait();
        taken.recv_timeout(Duration::from_secs(30)).unwrap();
        // A job that panics leaves the thread alive for the next.
        pool.submit(Box::new(|| panic!("a search's bug"))).unwrap();
        let (ran, done) = std::sync::mpsc::channel();
        submit_when_room(&pool, || {
            let ran = ran.clone();
            Box::new(move || ran.send(()).unwrap())
        });
        done.recv_timeout(Duration::from_secs(30)).unwrap();
    }

    #[tokio::test]
    async fn one_user_cannot_fill_the_queue_for_everyone() {
        let pool = Arc::new(SearchPool::start_spilling_after(1, 8, Duration::from_secs(600)).unwrap());
        assert_eq!(pool.per_user.limit(), 2, "a quarter of the queue");
        let held = hold_the_thread(&pool);
        let waiting = |user: &str| pool.per_user.held_by(user);
        let mut searches = Vec::new();
        for _ in 0..2 {
            let pool = pool.clone();
            searches.push(tokio::spawn(async move { pool.run_job("alice", || 1).await }));
        }
        while waiting("alice") < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // alice's third is refused at once; bob's is queued behind hers.
        let refused = tokio::time::timeout(Duration::from_secs(30), pool.run_job("alice", || 1))
            .await
            .expect("refused at once, not queued")
            .unwrap_err();
        assert_eq!(refused.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(
            refused.detail.contains("as many as one user may"),
            "{}",
            refused.detail
        );
        let bobs = pool.clone();
        searches.push(tokio::spawn(async move { bobs.run_job("bob", || 2).await }));
        while waiting("bob") < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        held.wait();
        let mut answers = Vec::new();
        for search in searches {
            answers.push(search.await.unwrap().unwrap());
        }
        assert_eq!(answers, [1, 1, 2]);
        assert_eq!(waiting("alice") + waiting("bob"), 0, "every slot given back");
        assert_eq!(pool.run_job("alice", || 3).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_search_whose_request_went_away_is_not_run() {
        let pool = SearchPool::start_spilling_after(1, 4, Duration::from_secs(600)).unwrap();
        let held = hold_the_thread(&pool);
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let runs = ran.clone();
        // The client gives up while the search waits for the held thread.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(100),
            pool.run_job("alice", move || {
                runs.store(true, std::sync::atomic::Ordering::SeqCst)
            }),
        )
        .await;
        assert!(gave_up.is_err(), "the search waited");
        held.wait();
        assert_eq!(pool.run_job("bob", || 7).await.unwrap(), 7, "the pool went on");
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "the abandoned search ran"
        );
        assert_eq!(pool.per_user.held_by("alice"), 0, "its slot was given back");
    }

    #[tokio::test]
    async fn spilled_searches_are_bounded_in_all_and_per_user() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let pool = Arc::new(SearchPool::start_spilling_after(1, 16, Duration::from_millis(20)).unwrap());
        let held = hold_the_thread(&pool);
        let running = Arc::new(AtomicUsize::new(0));
        let (release, released) = crossbeam_channel::bounded::<()>(0);
        let mut searches = Vec::new();
        let mut start = |user: &'static str| {
            let (pool, running, released) = (pool.clone(), running.clone(), released.clone());
            searches.push(tokio::spawn(async move {
                let search = move || {
                    running.fetch_add(1, SeqCst);
                    let _ = released.recv();
                    user
                };
                pool.run_job(user, search).await
            }));
        };
        let settled = |n: usize| {
            let running = running.clone();
            async move {
                while running.load(SeqCst) < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                // Time for one more to start, were it let.
                tokio::time::sleep(Duration::from_millis(300)).await;
                running.load(SeqCst)
            }
        };
        // One spill place per user (the pool's one thread): of alice's two, one runs.
        start("alice");
        start("alice");
        assert_eq!(settled(1).await, 1);
        // Two in all (twice the pool's threads): of bob's and carol's, one more runs.
        start("bob");
        start("carol");
        assert_eq!(settled(2).await, 2);
        assert_eq!(pool.spilled.available_permits(), 0);
        drop(release);
        held.wait();
        let mut answers = Vec::new();
        for search in searches {
            answers.push(search.await.unwrap().unwrap());
        }
        answers.sort_unstable();
        assert_eq!(answers, ["alice", "alice", "bob", "carol"]);
        assert_eq!(
            pool.spilled.available_permits(),
            2,
            "every spill place given back"
        );
        assert_eq!(pool.spilled_per_user.held_by("alice"), 0);
    }

    /// Holds the pool's one thread with a job until the returned barrier is waited on.
    fn hold_the_thread(pool: &SearchPool) -> Arc<Barrier> {
        let held = Arc::new(Barrier::new(2));
        let hold = held.clone();
        pool.submit(Box::new(move || {
            hold.wait();
        }))
        .unwrap();
        held
    }

    /// Submits the job `make` makes as soon as the queue has room.
    fn submit_when_room(pool: &SearchPool, make: impl Fn() -> Job) {
        while pool.submit(make()).is_err() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[tokio::test]
    async fn a_search_stuck_behind_slow_ones_runs_on_a_thread_of_its_own() {
        let pool = SearchPool::start_spilling_after(1, 4, Duration::from_secs(2)).unwrap();
        let held = hold_the_thread(&pool);
        // The only pool thread is held: the search is answered anyway, by a thread of its own.
        let answer = tokio::time::timeout(
            Duration::from_secs(60),
            pool.run_job("alice", || std::thread::current().name().map(String::from)),
        )
        .await
        .expect("answered while the pool thread is held");
        let ran_on = answer.unwrap();
        assert!(
            !ran_on.as_deref().unwrap_or("").starts_with("web-search-"),
            "ran on {ran_on:?}"
        );
        held.wait();
        // With the thread free again, searches run on the pool; the spilled one's queue slot
        // was left empty and is skipped.
        let ran_on = pool
            .run_job("alice", || std::thread::current().name().map(String::from))
            .await;
        assert_eq!(ran_on.unwrap().as_deref(), Some("web-search-0"));
        // A search that panics is a 500, on the pool and off it.
        let failed = pool
            .run_job("alice", || -> u8 { panic!("a search's bug") })
            .await
            .unwrap_err();
        assert_eq!(failed.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    }
}
