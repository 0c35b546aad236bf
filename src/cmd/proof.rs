//! `mailvault proof SEQ`: an RFC 6962 inclusion proof of a record in a signed checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use archive_core::export::bundle::{checked_inclusion_proof, ProofDocument};
use archive_core::log::checkpoint::SignedCheckpoint;
use archive_core::log::reader::LogReader;
use archive_core::log::tree::TreeFileReader;

use super::{existing_layout, read_checkpoint_file, verifier_key, CmdResult};
use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Record sequence number.
    seq: u64,
    /// Prove inclusion in this checkpoint instead of the latest one in the log.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The serve configuration: a record of a segment evicted to S3 (`[storage.s3]
    /// cache_size`) is read from its bucket.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let layout = existing_layout(cli)?;
    let key = verifier_key(&layout, None)?;
    let log = LogReader::open_with(
        &layout.log_dir,
        super::evicted_reads(&layout, args.config.as_deref())?,
    )?;
    let checkpoint: SignedCheckpoint = match &args.checkpoint {
        Some(path) => read_checkpoint_file(path, &key)?,
        None => {
            let (_, note) = log
                .latest_checkpoint()?
                .context("the log has no checkpoint yet")?;
            key.verify_note(&note)?
        }
    };
    let size = checkpoint.checkpoint.size;
    if args.seq == 0 {
        anyhow::bail!("there is no record 0: seqs count from 1");
    }
    let record = match log.read(args.seq) {
        Ok(record) => record,
        Err(archive_core::Error::NoSuchRecord(_)) => {
            // Only the newest segment is read: the others end where the next one starts.
            let last = match log.segments().last() {
                Some((first, _)) => first.saturating_sub(1) + log.records_from(*first)?.count() as u64,
                None => 0,
            };
            anyhow::bail!(
                "no record with seq {}: the log has {last} records (`mailvault log` lists them)",
                args.seq
            );
        }
        Err(e) => return Err(e.into()),
    };
    if args.seq > size {
        let which = match &args.checkpoint {
            Some(path) => format!("the checkpoint in {}", path.display()),
            None => "the latest checkpoint".into(),
        };
        anyhow::bail!(
            "record {} is not covered by {which} (it covers seq 1..={size}); prove it against a later checkpoint",
            args.seq
        );
    }
    let tree = TreeFileReader::open(&layout.tree)?;
    if !tree.covers(size) {
        anyhow::bail!("the tree cache does not reach size {size}: run `mailvault reindex`");
    }
    let proof = ProofDocument {
        inclusion: checked_inclusion_proof(&tree, &checkpoint.checkpoint, &record.leaf_bytes, args.seq)?,
        checkpoint: checkpoint.note,
    };
    // A proof carries the record's leaf data (its hash, envelope digest, time): an access.
    super::record_read(cli, "proof", format!("cli seq {} checkpoint {size}", args.seq));
    println!("{}", serde_json::to_string_pretty(&proof)?);
    Ok(ExitCode::SUCCESS)
}
