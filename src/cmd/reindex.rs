//! `mailvault reindex`: rebuild the derived indexes (tree cache, key-value index, search index)
//! from the log.

use std::process::ExitCode;

use archive_core::{Store, StoreConfig};

use super::{existing_layout, CmdResult};
use crate::Cli;

pub fn run(cli: &Cli) -> CmdResult {
    existing_layout(cli)?;
    let store = Store::reindex(&cli.data, &cli.key_path(), StoreConfig::default())?;
    store.wait_searchable()?;
    let stats = store.stats();
    store.close()?;
    println!("reindexed {} records", stats.indexed_seq);
    Ok(ExitCode::SUCCESS)
}
