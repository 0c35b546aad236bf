//! What `mailvault export` writes.

pub mod mbox;
