//! `mailvault config example`: a documented configuration with every default.

use std::process::ExitCode;

use super::CmdResult;

pub fn example() -> CmdResult {
    print!("{}", crate::config::EXAMPLE);
    Ok(ExitCode::SUCCESS)
}
