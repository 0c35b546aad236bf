//! The journal intake: SMTP and LMTP listeners that accept a relay's journaled copies and
//! answer 250 only after `archive_core::Store::append_message` made the message durable.
//!
//! - `server`: listeners, allow-list, session limits, graceful shutdown;
//! - `session`: one connection's state machine (commands parsed by `smtp-proto`);
//! - `journal`: journaling styles (plain, recipient-encoded, Exchange journal reports);
//! - `tls`: STARTTLS with rustls;
//! - `config`, `metrics`: settings and counters.

pub mod config;
pub mod journal;
pub mod metrics;
mod server;
mod session;
mod stream;
pub mod tls;

pub use config::IntakeConfig;
pub use server::Intake;
pub use session::Protocol;
