//! Who may log in to the read-only front doors (IMAP, web) and what they see once in. The
//! checks live here, not in the front doors, so no front door can forget one.
//!
//! - [`users`]: local users, their roles and [`Users::authenticate`] (login → [`Principal`]);
//! - [`users_file`]: `<data>/users.json` on disk, locked read-modify-write;
//! - [`password`]: Argon2id hashing with pinned parameters;
//! - [`names`]: what user names, addresses and domains may look like;
//! - [`limiter`]: failed-login rate limits per client address and per login name;
//! - [`upstream`]: pass-through logins checked by the mail server's own IMAP;
//! - [`tokens`]: API tokens for scripts, kept as hashes in the users file;
//! - [`login`]: [`LoginGate`], the one login path: limit, verify, audit; and the re-check of
//!   a live session at each request (`current`: the users file, re-read when it changed).
//!
//! Logins and failed logins are audit records: see [`crate::audit::AuditEvent::login`].
//! Nothing here logs, and no error or event ever holds a password.
//!
//! [`Principal`]: crate::search::Principal

mod current;
pub mod limiter;
pub mod listing;
pub mod login;
pub mod names;
pub mod password;
pub mod per_user;
#[cfg(test)]
mod test_support;
pub mod tokens;
pub mod upstream;
pub mod users;
pub mod users_file;

pub use limiter::{LoginLimiter, RetryAfter};
pub use login::{LoginGate, LoginRefused};
pub use password::hash_password;
pub use per_user::{PerUser, UserShare};
pub use upstream::{AuthConfig, PassThrough, UpstreamRefusal};
pub use users::{AuditorDomains, AuthFailure, Authenticated, Role, UserRecord, Users};
