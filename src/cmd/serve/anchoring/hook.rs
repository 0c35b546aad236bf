//! `[anchoring] hook`: a command run with the newest signed checkpoint on stdin, so that
//! checkpoints leave the machine (mailed to an auditor, committed elsewhere) and a rewritten
//! history is caught by someone else. The anchoring round runs it when there is a newer
//! checkpoint; a failing or hanging hook is logged loudly, killed after `hook_timeout_secs`,
//! and tried again with the next round.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::AnchoringSettings;

/// Runs the hook once with `note` on stdin; it must exit 0 within the timeout.
pub fn run_hook(settings: &AnchoringSettings, note: &str) -> anyhow::Result<()> {
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
