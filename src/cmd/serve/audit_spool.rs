//! The server's side of the audit spool: a thread of its own (never an async worker) takes
//! spooled audit events into the log at start, every few seconds, and once more at a clean
//! stop (`archive_core::audit::SpoolIngester`).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use archive_core::audit::SpoolIngester;
use archive_core::Store;

/// How often the spool is looked at while the server runs.
const INTERVAL: Duration = Duration::from_secs(2);

/// The running ingest thread.
pub struct SpoolThread {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<SpoolIngester>,
    store: Arc<Store>,
}

impl SpoolThread {
    /// Starts the thread; its first round runs at once.
    pub fn start(store: Arc<Store>) -> anyhow::Result<SpoolThread> {
        let (stop, stopped) = mpsc::channel();
        let shared = Arc::clone(&store);
        let thread = std::thread::Builder::new()
            .name("mailvault-audit-spool".into())
            .spawn(move || {
                let mut ingester = SpoolIngester::default();
                loop {
                    let more = round(&mut ingester, &shared);
                    // A full round goes on at once (each round is bounded); else wait.
                    let wait = if more { Duration::ZERO } else { INTERVAL };
                    match stopped.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return ingester,
                    }
                }
            })
            .context("starting the audit spool thread")?;
        Ok(SpoolThread { stop, thread, store })
    }

    /// Stops the thread and takes in what the spool holds now (a clean stop leaves it empty
    /// of everything spooled before this call).
    pub fn stop(self) {
        let _ = self.stop.send(());
        let mut ingester = self.thread.join().unwrap_or_default();
        if let Err(e) = ingester.drain(&self.store) {
            tracing::error!(error = %e, "audit spool: the last round at stop failed; the files stay for the next start");
        }
    }
}

/// One round; says whether more files wait. Errors are logged: the files stay and the next
/// round tries again.
fn round(ingester: &mut SpoolIngester, store: &Store) -> bool {
    match ingester.round(store) {
        Ok(r) => {
            if r.appended > 0 || r.rejected > 0 {
                tracing::info!(
                    appended = r.appended,
                    rejected = r.rejected,
                    "audit spool taken in"
                );
            }
            if r.rejected > 0 {
                tracing::warn!(
                    rejected = r.rejected,
                    "audit spool: files that are not audit events were moved to audit-spool/rejected/ (audited)"
                );
            }
            r.more
        }
        Err(e) => {
            tracing::error!(error = %e, "audit spool: a round failed; its files stay for the next one");
            false
        }
    }
}
