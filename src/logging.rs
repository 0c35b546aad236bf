//! The server's log: a filter checked before use (a misspelt level must not turn the log off),
//! text or JSON lines on stderr, and a handle to change the filter while running (SIGHUP).

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{validate_log_filter, LogFormat};

/// Changes the log filter of the running process.
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set: it wins over the configuration, also on reload.
    from_env: bool,
}

/// The filter in effect: `RUST_LOG` if set (checked like the configuration's), else
/// `configured`.
fn effective_filter(configured: &str) -> anyhow::Result<(String, bool)> {
    match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => {
            validate_log_filter(&env).map_err(|e| anyhow::anyhow!("RUST_LOG: {e}"))?;
            Ok((env, true))
        }
        _ => Ok((configured.to_string(), false)),
    }
}

/// Starts logging to stderr with `filter` (already checked as `server.log`) in `format`.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<LogControl> {
    let (filter, from_env) = effective_filter(filter)?;
    let filter = EnvFilter::builder()
        .parse(&filter)
        .map_err(|e| anyhow::anyhow!("log filter {filter:?}: {e}"))?;
    let (filter, handle) = reload::Layer::new(filter);
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // A subscriber set before (tests in one process) stays; this one is then unused.
    let _ = tracing_subscriber::registry().with(filter).with(lines).try_init();
    Ok(LogControl { handle, from_env })
}

impl LogControl {
    /// Applies a new `server.log` (already checked). Returns false when `RUST_LOG` overrides
    /// the configuration, so nothing changed.
    pub fn set(&self, configured: &str) -> anyhow::Result<bool> {
        if self.from_env {
            return Ok(false);
        }
        let filter = EnvFilter::builder()
            .parse(configured)
            .map_err(|e| anyhow::anyhow!("log filter {configured:?}: {e}"))?;
        self.handle
            .reload(filter)
            .map_err(|e| anyhow::anyhow!("changing the log filter: {e}"))?;
        Ok(true)
    }
}
