//! `mailvault key show`: the public key, for auditors to pin.

use std::process::ExitCode;

use archive_core::log::checkpoint::LogKey;

use super::{existing_layout, CmdResult};
use crate::Cli;

pub fn show(cli: &Cli) -> CmdResult {
    let layout = existing_layout(cli)?;
    let stored = layout.verifier_key()?;
    // With the private key at hand, make sure the stored public key really is its half.
    let key_path = cli.key_path();
    if key_path.exists() {
        let private = LogKey::read(&key_path)?;
        if private.verifier() != stored {
            anyhow::bail!(
                "{} does not match the public key stored in {}",
                key_path.display(),
                layout.public_key.display()
            );
        }
    }
    println!("{}", stored.encode());
    Ok(ExitCode::SUCCESS)
}
