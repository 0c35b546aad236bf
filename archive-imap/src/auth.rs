//! Who may log in: the front door asks an [`Authenticator`], which the binary wires to the
//! users directory (or a test double). Passwords never leave this call and are never logged.

use std::net::IpAddr;

use archive_core::search::Principal;

/// Checks credentials and says who the user is.
pub trait Authenticator: Send + Sync {
    /// The principal for `user` with `password`, connecting from `peer`; `Err` carries a
    /// reason for the log (never shown to the client, which only learns that it failed).
    fn authenticate(&self, user: &str, password: &str, peer: IpAddr) -> Result<Principal, String>;
}
