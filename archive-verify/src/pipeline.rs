//! Work on the machine's other cores, handed back in the order it was submitted: export
//! deflates messages and verify-bundle checks them on worker threads while one thread reads,
//! writes and compares in order. What is in flight is bounded (jobs and a weight, e.g. bytes),
//! so memory does not grow with the number of jobs.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// Worker threads running submitted closures; results come back in submission order.
pub struct Ordered<T: Send + 'static> {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    pending: VecDeque<(Receiver<T>, usize)>,
    weight: usize,
    max_jobs: usize,
    max_weight: usize,
}

/// A worker thread ended without handing back its job's result (it panicked).
#[derive(Debug)]
pub struct WorkerLost;

impl std::fmt::Display for WorkerLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a worker thread failed")
    }
}

impl std::error::Error for WorkerLost {}

/// Worker threads to use: the machine's cores, at least one, at most four.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

impl<T: Send + 'static> Ordered<T> {
    /// `threads` workers (at least one); at most `max_jobs` results pending and, beyond the
    /// oldest one, at most `max_weight` of submitted weight.
    pub fn new(threads: usize, max_jobs: usize, max_weight: usize) -> Ordered<T> {
        let (tx, rx) = sync_channel::<Job>(threads.max(1) * 2);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads.max(1))
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || loop {
                    // The lock is held only while taking a job, not while running it.
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
            })
            .collect();
        Ordered {
            jobs: Some(tx),
            workers,
            pending: VecDeque::new(),
            weight: 0,
            max_jobs: max_jobs.max(1),
            max_weight,
        }
    }

    /// Queues `job`; its result comes from [`Self::wait_next`] after those of earlier jobs.
    pub fn submit(
        &mut self,
        weight: usize,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<(), WorkerLost> {
        let (tx, rx) = sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        self.jobs
            .as_ref()
            .ok_or(WorkerLost)?
            .send(job)
            .map_err(|_| WorkerLost)?;
        self.pending.push_back((rx, weight));
        self.weight += weight;
        Ok(())
    }

    /// Whether the bound on what is in flight is reached: take results before submitting more.
    pub fn full(&self) -> bool {
        self.pending.len() >= self.max_jobs || (self.pending.len() > 1 && self.weight > self.max_weight)
    }

    /// The oldest job's result, waiting for it; `None` when nothing is pending.
    pub fn wait_next(&mut self) -> Option<Result<T, WorkerLost>> {
        let (rx, weight) = self.pending.pop_front()?;
        self.weight -= weight;
        Some(rx.recv().map_err(|_| WorkerLost))
    }
}

impl<T: Send + 'static> Drop for Ordered<T> {
    fn drop(&mut self) {
        // Closing the queue ends the workers once they finish what they hold.
        self.jobs = None;
        self.pending.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Results come back in submission order whatever order the workers finish in, and no
    /// more than the bound is ever pending.
    #[test]
    fn results_come_in_submission_order_within_the_bound() {
        let mut pool = Ordered::new(3, 8, 100);
        let mut got = Vec::new();
        for i in 0..200u64 {
            while pool.full() {
                got.push(pool.wait_next().expect("pending").expect("result"));
            }
            pool.submit(10, move || {
                // Early jobs take longest, so later ones finish first.
                std::thread::sleep(std::time::Duration::from_micros((200 - i) * 10));
                i
            })
            .expect("submit");
            assert!(pool.pending.len() <= 8 && pool.weight <= 110);
        }
        while let Some(r) = pool.wait_next() {
            got.push(r.expect("result"));
        }
        assert_eq!(got, (0..200).collect::<Vec<_>>());
    }

    /// A job that panics is reported as lost, not waited for forever.
    #[test]
    fn a_panicking_job_is_lost_not_hung() {
        let mut pool = Ordered::new(1, 4, usize::MAX);
        pool.submit(1, || -> u8 { panic!("job fails") }).expect("submit");
        assert!(pool.wait_next().expect("pending").is_err());
    }
}
