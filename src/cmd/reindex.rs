//! `mailvault reindex`: rebuild the derived indexes (tree cache, key-value index, search index)
//! from the log.

use std::path::PathBuf;
use std::process::ExitCode;

use archive_core::{Store, StoreConfig};

use super::{existing_layout, CmdResult};
use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The serve configuration: segments evicted to S3 (`[storage.s3] cache_size`) are read
    /// from the bucket of its [storage.s3].
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    existing_layout(cli)?;
    let s3 = match &args.config {
        Some(path) => crate::config::Config::load(path)?.storage.s3,
        None => None,
    };
    let config = StoreConfig {
        remote: crate::remote_segments::remote_config(s3.as_ref())?,
        ..StoreConfig::default()
    };
    let store = Store::reindex(&cli.data, &cli.key_path(), config)?;
    store.wait_searchable()?;
    let stats = store.stats();
    store.close()?;
    println!("reindexed {} records", stats.indexed_seq);
    Ok(ExitCode::SUCCESS)
}
