//! Derived state: indexes computed from the log and rebuilt from it whenever they are lost.
//! Each records the last log seq it applied in the same transaction as its data.

pub mod kv;
