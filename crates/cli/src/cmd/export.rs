//! `leaktrail export`.

use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_export::ExportOptions;

/// Flags of `leaktrail export`.
#[derive(clap::Args)]
#[command(after_help = "\
Writes what each snapshot holds as Parquet tables for Spark, Trino, DataFusion or \
DuckDB: snapshots, blocks, stacks, frames, classes, each under \
OUT/TABLE/host=H/pid=P/snapshot=MS/part-0.parquet (Hive partitions; MS is the capture \
time in ms since the epoch). Addresses and sizes are signed 64-bit integers. The \
schema, its version and example queries (growth per site across hosts, top classes \
per service, leaks per deploy) are in docs/parquet.md.

Examples:
  leaktrail export rec/ --parquet tables/ --service api --deploy v42
  leaktrail export rec/snapshots/0003.core --parquet tables/ --reachability")]
pub struct Args {
    /// A recording directory (all its snapshots) or snapshot files.
    #[arg(required = true, value_name = "DIR|SNAP")]
    pub inputs: Vec<PathBuf>,
    /// The directory the tables go under.
    #[arg(long, value_name = "OUT")]
    pub parquet: PathBuf,
    #[command(flatten)]
    pub labels: Labels,
    /// Classify every block (definite, indirect, possible, reachable): a
    /// reachability scan per snapshot, which needs --memory full.
    #[arg(long)]
    pub reachability: bool,
}

/// How exported tables are labelled (shared by `export` and `run --export`).
#[derive(clap::Args, Clone)]
pub struct Labels {
    /// The host= partition [default: this machine's host name].
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// The service column of the snapshots table.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// The deploy column of the snapshots table (a version, a release).
    #[arg(long, value_name = "ID")]
    pub deploy: Option<String>,
}

impl Labels {
    /// The export options these labels make.
    pub fn options(&self, reachability: bool) -> ExportOptions {
        let mut o = ExportOptions::default();
        o.host = self.host.clone();
        o.service = self.service.clone();
        o.deploy = self.deploy.clone();
        o.reachability = reachability;
        o
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = args.labels.options(args.reachability);
    for w in leaktrail_export::export(&args.inputs, &args.parquet, &opts)? {
        println!(
            "{}: {} blocks ({})",
            w.partition,
            w.blocks,
            w.snapshot.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
