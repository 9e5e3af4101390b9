//! `leaktrail man`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use std::io::Write;

/// Flags of `leaktrail man`.
#[derive(clap::Args)]
#[command(after_help = "\
Without -o, prints leaktrail(1). With -o DIR, writes leaktrail.1 and one page per \
subcommand (leaktrail-run.1, leaktrail-maps-diff.1, ...) into DIR, created if missing.

Examples:
  leaktrail man | man -l -
  leaktrail man -o ~/.local/share/man/man1")]
pub struct Args {
    /// Folder for every page [default: leaktrail(1) on standard output].
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::Cli::command().disable_help_subcommand(true);
    // Building names each subcommand as the pages refer to it
    // (`leaktrail-maps-diff`).
    cmd.build();
    match &args.out {
        None => std::io::stdout().lock().write_all(&render(&cmd)?)?,
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            write_pages(&cmd, dir)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn render(cmd: &clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    Ok(page)
}

/// Writes `cmd`'s page and those of its subcommands, depth first.
fn write_pages(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    let name = clap_mangen::Man::new(cmd.clone()).get_filename();
    // Plain writes, with the umask's mode: a man folder is often shared.
    let path = dir.join(&name);
    std::fs::write(&path, render(cmd)?).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
