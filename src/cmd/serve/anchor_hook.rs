//! `[anchoring] hook`: a command run with the newest signed checkpoint on stdin, so that
//! checkpoints leave the machine (mailed to an auditor, committed elsewhere) and a rewritten
//! history is caught by someone else. Runs on a thread of its own: at start, then every
//! `hook_interval_secs` when there is a newer checkpoint; a failing or hanging hook is logged
//! loudly, killed after `hook_timeout_secs`, and tried again with the next round.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use archive_core::Store;

use super::anchor_tsa;
use crate::config::AnchoringSettings;

/// The running hook thread.
pub struct HookThread {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl HookThread {
    /// Starts the thread when a hook or a time-stamping authority is configured (the TSAs'
    /// certificates must load: a start-up error names the key).
    pub fn start(store: Arc<Store>, settings: &AnchoringSettings) -> anyhow::Result<Option<HookThread>> {
        if settings.hook.is_empty() && settings.tsa.is_empty() {
            return Ok(None);
        }
        anchor_tsa::load_pins(settings)?;
        let settings = settings.clone();
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mailvault-anchor-hook".into())
            .spawn(move || {
                let mut handed_over: Option<u64> = None;
                loop {
                    if let Some((_, signed)) = store.latest_checkpoint() {
                        let size = signed.checkpoint.size;
                        // TSA's own rounds (the lead merges them with the witnesses' into one).
                        if !settings.tsa.is_empty() {
                            if let Err(e) =
                                anchor_tsa::timestamp_checkpoint(&settings, store.layout(), size, &signed.note)
                            {
                                tracing::error!(
                                    tree_size = size,
                                    error = %format!("{e:#}"),
                                    "time-stamping failed; the checkpoint has no token from these TSAs (tried again next round)"
                                );
                            }
                        }
                        if !settings.hook.is_empty() && handed_over != Some(size) {
                            match run_hook(&settings, &signed.note) {
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
                    }
                    match stopped.recv_timeout(Duration::from_secs(settings.hook_interval_secs)) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .context("starting the anchoring hook thread")?;
        Ok(Some(HookThread { stop, thread }))
    }

    /// Stops the thread (a hook running now is waited for, up to its timeout).
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Runs the hook once with `note` on stdin; it must exit 0 within the timeout.
fn run_hook(settings: &AnchoringSettings, note: &str) -> anyhow::Result<()> {
    let (program, args) = settings.hook.split_first().context("no hook program")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input still decides by its exit status.
        let _ = stdin.write_all(note.as_bytes());
    }
    let deadline = Instant::now() + Duration::from_secs(settings.hook_timeout_secs);
    loop {
        if let Some(status) = child.try_wait().context("waiting for the hook")? {
            if status.success() {
                return Ok(());
            }
            anyhow::bail!("{program} exited with {status}");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{program} did not finish within {} s and was killed",
                settings.hook_timeout_secs
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
