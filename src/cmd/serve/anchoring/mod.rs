//! `[anchoring]`: checkpoints leave the machine, so that a rewritten history is caught by
//! someone else. One thread runs a round at start and then every `interval_secs`: the newest
//! checkpoint goes to the hook (when newer than the last it took), to every witness that
//! has not cosigned it yet (`witness.rs`) and to every time-stamping authority that has not
//! stamped it yet (`tsa.rs`). Nothing here ever holds up intake: a round only
//! reads the store's newest checkpoint and proofs.

mod hook;
pub mod tsa;
pub mod witness;

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use archive_core::Store;

use crate::config::AnchoringSettings;

/// The running anchoring thread.
pub struct AnchoringThread {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl AnchoringThread {
    /// Starts the thread when a hook, a witness or a TSA is configured (the TSAs'
    /// certificates must load: a start-up error names the key).
    pub fn start(store: Arc<Store>, settings: &AnchoringSettings) -> anyhow::Result<Option<AnchoringThread>> {
        if settings.hook.is_empty() && settings.witnesses.is_empty() && settings.tsa.is_empty() {
            return Ok(None);
        }
        tsa::load_pins(settings)?;
        let settings = settings.clone();
        let interval = Duration::from_secs(settings.interval_secs);
        let mut witnesses = settings
            .witnesses
            .iter()
            .map(|w| witness::Witness::new(w, &settings, interval))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !witnesses.is_empty() {
            let keys: Vec<String> = witnesses.iter().map(|w| w.key_string()).collect();
            archive_core::anchors::record_witness_keys(store.layout(), &keys)
                .context("recording the witness keys in the anchors directory")?;
        }
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mailvault-anchoring".into())
            .spawn(move || {
                let mut handed_over: Option<u64> = None;
                loop {
                    if let Some((_, signed)) = store.latest_checkpoint() {
                        let size = signed.checkpoint.size;
                        if !settings.hook.is_empty() && handed_over != Some(size) {
                            match hook::run_hook(&settings, &signed.note) {
                                Ok(()) => {
                                    tracing::info!(tree_size = size, "anchoring hook took the checkpoint");
                                    handed_over = Some(size);
                                }
                                Err(e) => tracing::error!(
                                    tree_size = size,
                                    error = %format!("{e:#}"),
                                    "anchoring hook failed; the checkpoint did not leave the machine (tried again next round)"
                                ),
                            }
                        }
                        for w in &mut witnesses {
                            w.round(&store, &signed);
                        }
                        if !settings.tsa.is_empty() {
                            if let Err(e) = tsa::timestamp_checkpoint(&settings, store.layout(), size, &signed.note) {
                                tracing::error!(
                                    tree_size = size,
                                    error = %format!("{e:#}"),
                                    "time-stamping failed; the checkpoint has no token from these TSAs (tried again next round)"
                                );
                            }
                        }
                    }
                    match stopped.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .context("starting the anchoring thread")?;
        Ok(Some(AnchoringThread { stop, thread }))
    }

    /// Stops the thread (a hook or request running now is waited for, up to its timeout).
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
