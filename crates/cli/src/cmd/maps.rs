//! `leaktrail maps`.

use std::process::ExitCode;

/// Flags of `leaktrail maps`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
