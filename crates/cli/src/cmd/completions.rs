//! `leaktrail completions`.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// Flags of `leaktrail completions`.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  leaktrail completions bash > ~/.local/share/bash-completion/completions/leaktrail
  leaktrail completions zsh > ~/.zfunc/_leaktrail
  leaktrail completions fish > ~/.config/fish/completions/leaktrail.fish")]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Runs the subcommand: the script goes to standard output.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "leaktrail", &mut out);
    std::io::stdout().lock().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}
