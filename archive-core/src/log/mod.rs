//! The log: segment files of framed records, a blake3 chain and an RFC 6962 Merkle tree over
//! the same leaves, and signed checkpoints. The only source of truth in a store.

pub mod checkpoint;
pub mod evicted;
pub mod merkle;
pub mod reader;
pub mod record;
pub mod remote;
pub mod segment;
pub mod tree;
