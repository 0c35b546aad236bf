//! `mailvault init`: create a store and its signing key.

use std::process::ExitCode;

use archive_core::store::Layout;
use archive_core::Store;

use super::CmdResult;
use crate::Cli;

pub fn run(cli: &Cli) -> CmdResult {
    let key_path = cli.key_path();
    let identity = Store::create(&cli.data, &key_path)?;
    let public = Layout::new(&cli.data).verifier_key()?;
    println!(
        "created store {} (origin {})",
        cli.data.display(),
        identity.origin
    );
    println!(
        "signing key: {} (mode 0600; keep it safe, and elsewhere in production)",
        key_path.display()
    );
    println!("public key:  {}", public.encode());
    Ok(ExitCode::SUCCESS)
}
