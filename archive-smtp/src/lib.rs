//! The journal intake: SMTP and LMTP listeners that accept a relay's journaled copies and
//! answer 250 only after `archive_core::Store::append_message` made the message durable.
//!
//! - `server`: listeners, allow-list, session limits (per listener, per client, for clients
//!   outside the allow-list), graceful shutdown;
//! - `session`: one connection's state machine (commands parsed by `smtp-proto`, BDAT by
//!   `bdat`), its time limits and command budget; `transaction`: MAIL, RCPT, DATA/BDAT and the
//!   archiving of a complete message;
//! - `auth`: AUTH PLAIN through the store's login gate;
//! - `journal`: journaling styles (plain, recipient-encoded, Exchange journal reports) and
//!   which configured source gets which;
//! - `deliver`: archiving a complete transaction in its style;
//! - `tls`: STARTTLS with rustls;
//! - `config`, `metrics`: settings and counters.

mod auth;
mod bdat;
pub mod config;
mod deliver;
pub mod journal;
pub mod metrics;
mod server;
mod session;
mod stream;
pub mod tls;
mod transaction;

pub use config::IntakeConfig;
pub use server::{Intake, StartError};
pub use session::Protocol;
