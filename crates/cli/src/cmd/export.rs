//! `leaktrail export`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

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
  leaktrail export rec/snapshots/0003.core --parquet tables/ --reachability
  leaktrail export s3://fleet/api/web-1/ --parquet s3://fleet/tables/ --host web-1")]
pub struct Args {
    /// A recording directory (all its snapshots) or snapshot files, or
    /// their `s3://` URLs.
    #[arg(required = true, value_name = "DIR|SNAP")]
    pub inputs: Vec<PathBuf>,
    /// The directory the tables go under, or `s3://BUCKET/PREFIX`.
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
    let out = Tables::to(&args.parquet)?;
    let inputs = super::locals(&args.inputs)?;
    for snap in leaktrail_export::snapshot_files(&inputs)? {
        let w = out.write(&snap, &opts)?;
        println!(
            "{}: {} blocks ({})",
            w.partition,
            w.blocks,
            w.snapshot.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where tables go: a directory, or an `s3://` prefix (each snapshot's
/// files written into a local spool, then uploaded, each object visible
/// only once complete, and the spool's copies removed).
pub enum Tables {
    /// A local directory.
    Dir(PathBuf),
    /// A prefix in a store.
    Store {
        /// The prefix.
        url: leaktrail_store::S3Url,
        /// Its store.
        store: leaktrail_store::Store,
        /// Where files wait for their upload.
        spool: PathBuf,
    },
}

impl Tables {
    /// Checks `out` (the store's configuration for a URL) before anything
    /// is read or started.
    pub fn to(out: &Path) -> anyhow::Result<Tables> {
        if !leaktrail_store::is_url(out) {
            return Ok(Tables::Dir(out.to_path_buf()));
        }
        let url = leaktrail_store::S3Url::parse(&out.to_string_lossy())?;
        let store = leaktrail_store::Store::for_url(&url)?;
        let spool = leaktrail_store::cache_dir()
            .join("spool")
            .join(format!("export-{}", std::process::id()));
        Ok(Tables::Store { url, store, spool })
    }

    /// Writes the tables of the snapshot at `snap`; the files written are
    /// paths or URLs.
    pub fn write(
        &self,
        snap: &Path,
        opts: &leaktrail_export::ExportOptions,
    ) -> anyhow::Result<leaktrail_export::Written> {
        let (url, store, spool) = match self {
            Tables::Dir(out) => return Ok(leaktrail_export::write(snap, out, opts)?),
            Tables::Store { url, store, spool } => (url, store, spool),
        };
        let mut w = leaktrail_export::write(snap, spool, opts)?;
        let result = w.files.iter_mut().try_for_each(|file| {
            let rel = file.strip_prefix(spool).unwrap_or(file);
            let to = url.join(&rel.to_string_lossy());
            let sent = store.send(file, &to.key);
            let _ = std::fs::remove_file(&*file);
            *file = PathBuf::from(to.to_string());
            sent.map(|_| ())
        });
        result.with_context(|| format!("uploading the tables of {}", snap.display()))?;
        Ok(w)
    }
}

impl Drop for Tables {
    fn drop(&mut self) {
        if let Tables::Store { spool, .. } = self {
            let _ = std::fs::remove_dir_all(spool);
        }
    }
}
