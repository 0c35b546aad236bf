//! The journal intake: SMTP and LMTP listeners that accept a relay's journaled copies and
//! answer 250 only after `archive_core::Store::append_delivery` has made the message durable.
//!
//! Not built yet (issue "Journal intake"); the crate exists so the workspace has its final shape
//! and the dependency direction (front door → core) is fixed from the start.
