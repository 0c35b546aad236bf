//! Read-only IMAP4rev1 over the archive: mailboxes are views of the log computed by
//! `archive_core`, and every mutating command is refused.
//!
//! Not built yet (issue "Read-only IMAP"); the crate exists so the workspace has its final shape
//! and the dependency direction (front door → core) is fixed from the start.
