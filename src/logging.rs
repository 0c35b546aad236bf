//! The server's log: a filter checked before use (a misspelt level must not turn the log off),
//! text or JSON lines on stderr.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{validate_log_filter, LogFormat};

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
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let (filter, _) = effective_filter(filter)?;
    let filter = EnvFilter::builder()
        .parse(&filter)
        .map_err(|e| anyhow::anyhow!("log filter {filter:?}: {e}"))?;
    let (filter, _) = reload::Layer::<_, Registry>::new(filter);
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
    Ok(())
}
