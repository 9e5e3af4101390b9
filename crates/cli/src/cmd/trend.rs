//! `leaktrail trend`.

use std::process::ExitCode;

/// Flags of `leaktrail trend`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
