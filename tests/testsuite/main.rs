//! End-to-end tests of the `mailvault` binary: each runs the real executable on a temp store.
//! One test binary for the whole suite (fast to build); shared helpers live in `util`.

mod anchoring;
mod audit_trail;
mod certificates;
mod cli;
mod clients;
mod doctor;
mod export;
mod imap;
mod imap_hostile;
mod imap_sync;
mod import;
mod import_imap;
mod intake;
mod intake_abuse;
mod intake_auth;
mod isolation;
mod lossyfs;
mod mbox_export;
mod metrics;
mod postfix;
mod powerloss;
mod readme;
mod reload;
mod roundtrip;
mod search;
mod segment_eio;
mod server_log;
mod store_failure;
mod tamper;
mod timestamps;
mod upstream;
mod users;
mod util;
mod witness;
mod witness_server;
