//! leaktrail's audit tables as Parquet, for the engines users already run.
//!
//! A fleet's snapshots are too many for one machine to analyse, and the
//! people who run fleets already run Spark, Trino, DataFusion or DuckDB
//! over Parquet in an object store. So rather than embed an engine we
//! write what a snapshot holds as five flat tables with a documented,
//! versioned schema (`docs/parquet.md`), and the questions ("which site
//! grows on every host?", "which size classes does each service hold?")
//! become SQL.
//!
//! * [`tables`] builds the tables of one snapshot: `snapshots` (one row),
//!   `blocks` (one per live buffer, with its reachability class when
//!   asked), `stacks` (one per stack id, with its site: the identity of an
//!   allocation site across processes), `frames` (symbolized, inlined
//!   calls as rows of their own) and `classes` (the tracer's size-class
//!   counters).
//! * [`write`] encodes them under a Hive-partitioned directory,
//!   `OUT/TABLE/host=H/pid=P/snapshot=S/part-0.parquet`, each file
//!   written under a hidden temporary name and renamed (engines skip
//!   names starting with `.`), so a reader never sees half a table.
//! * [`export`] does it for every snapshot of a recording or a list of
//!   files.
//!
//! Addresses and sizes are signed 64-bit integers: Spark and Trino have no
//! unsigned types and mishandle Parquet's unsigned annotations; an address
//! above `i64::MAX` (none on x86-64 Linux user space) keeps its bits.
//! Every file carries `leaktrail.schema_version` ([`SCHEMA_VERSION`]) and
//! `leaktrail.table` in its key-value metadata.
//!
//! ```no_run
//! use leaktrail_export::{export, ExportOptions};
//! let mut opts = ExportOptions::default();
//! opts.service = Some("api".into());
//! for w in export(&["rec".into()], "tables".as_ref(), &opts)? {
//!     println!("{}: {} blocks", w.partition, w.blocks);
//! }
//! # Ok::<(), leaktrail_export::Error>(())
//! ```
#![deny(missing_docs)]

mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use leaktrail_analysis::leaks::{self, LeaksOptions};
use leaktrail_analysis::profile::{audit_of, capture_time, SiteKey};
use leaktrail_analysis::{Heap, Symbolizer};
use leaktrail_format::{class_of, class_size, LeakKind, StackId};
use leaktrail_recording::{dir, output, Audit, Snapshot};

pub use table::{Table, Values};

/// The version of the tables' schema, in every file's metadata. Adding a
/// column keeps it; renaming, removing or changing the meaning of one
/// raises it (and `docs/parquet.md` says what changed).
pub const SCHEMA_VERSION: u32 = 1;

/// The tables, in the order [`tables`] returns them.
pub const TABLES: [&str; 5] = ["snapshots", "blocks", "stacks", "frames", "classes"];

/// Everything that can go wrong exporting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The snapshot could not be read or analysed.
    #[error(transparent)]
    Analysis(#[from] leaktrail_analysis::Error),
    /// A table could not be encoded.
    #[error("encoding the {table} table: {why}")]
    Encode {
        /// The table.
        table: String,
        /// What the Parquet writer said.
        why: String,
    },
}

impl Error {
    /// Whether the error is the user's input rather than a failure of ours.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Analysis(e) => e.is_bad_input(),
            Error::Encode { .. } => false,
        }
    }
}

impl From<leaktrail_recording::Error> for Error {
    fn from(e: leaktrail_recording::Error) -> Self {
        Error::Analysis(e.into())
    }
}

/// What to export, and the labels to put on it.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ExportOptions {
    /// The `host=` partition (default: this machine's host name).
    pub host: Option<String>,
    /// The `service` column of the snapshots table.
    pub service: Option<String>,
    /// The `deploy` column of the snapshots table.
    pub deploy: Option<String>,
    /// Classify every block (definite, indirect, possible, reachable):
    /// a reachability scan per snapshot, which needs its memory.
    pub reachability: bool,
}

/// The tables of one snapshot and where they go.
#[derive(Clone, Debug)]
pub struct SnapshotTables {
    /// `host=H/pid=P/snapshot=S`, escaped as Hive escapes partition values.
    pub partition: String,
    /// The tables, named as in [`TABLES`].
    pub tables: Vec<(&'static str, Table)>,
}

/// One snapshot written.
#[derive(Clone, Debug)]
pub struct Written {
    /// The snapshot file.
    pub snapshot: PathBuf,
    /// Its partition (see [`SnapshotTables::partition`]).
    pub partition: String,
    /// The files written, one per table.
    pub files: Vec<PathBuf>,
    /// Rows of the blocks table.
    pub blocks: usize,
}

/// This machine's host name, as the kernel has it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A Hive partition value: characters other than letters, digits, `.`,
/// `_` and `-` as `%XX`, as Hive and Spark write and read them.
fn partition_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The site of a stack, as text: its physical frames (inlined calls left
/// out, as growth keys them), innermost first, each `module+0xOFFSET` (the
/// offset in the module's file) or `0xADDRESS` outside any module, joined
/// by `;`. The same in every process of the same binaries.
pub fn site_text(key: &SiteKey) -> String {
    key.0
        .iter()
        .map(|(m, off)| {
            if m.is_empty() {
                format!("{off:#x}")
            } else {
                format!("{m}+{off:#x}")
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// 64-bit FNV-1a of `s`, as the signed integer the tables hold.
fn site_id(s: &str) -> i64 {
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    h as i64
}

fn leak_kind_name(k: LeakKind) -> String {
    match k {
        LeakKind::Definite => "definite",
        LeakKind::Indirect => "indirect",
        LeakKind::Possible => "possible",
        LeakKind::Reachable => "reachable",
    }
    .to_string()
}

/// The tables of the snapshot at `path`.
pub fn tables(path: &Path, opts: &ExportOptions) -> Result<SnapshotTables, Error> {
    let snap = Snapshot::open(path)?;
    let (audit, kinds) = if opts.reachability {
        let heap = Heap::open(&snap)?;
        heap.require_memory()?;
        let (kinds, ..) = leaks::classify(&heap, &LeaksOptions::default());
        (heap.audit, Some(kinds))
    } else {
        (audit_of(&snap)?, None)
    };
    let time = capture_time(&snap, Some(&audit));
    let pid = snap.pid().unwrap_or(audit.pid as i32);
    let host = opts.host.clone().unwrap_or_else(host_name);
    // Milliseconds since the epoch name a snapshot whatever its file is
    // called, and sort as the snapshots were taken.
    let snapshot_ms = time / 1_000_000;
    let partition = format!(
        "host={}/pid={pid}/snapshot={snapshot_ms}",
        partition_value(&host)
    );
    let symbolizer = Symbolizer::for_snapshot(&snap);
    let meta = snap.metadata();
    let snapshots = Table::default()
        .column("time_unix_ns", Values::I64(vec![time as i64]))
        .column(
            "file",
            Values::Str(vec![path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())]),
        )
        .column("at_exit", Values::Bool(vec![dir::snapshots::is_exit(path)]))
        .column("comm", Values::OptStr(vec![meta.map(|m| m.comm.clone())]))
        .column(
            "exe",
            Values::OptStr(vec![meta.and_then(|m| m.exe.clone())]),
        )
        .column("service", Values::OptStr(vec![opts.service.clone()]))
        .column("deploy", Values::OptStr(vec![opts.deploy.clone()]))
        .column("live_blocks", Values::I64(vec![audit.live.len() as i64]))
        .column("live_bytes", Values::I64(vec![audit.live_bytes() as i64]))
        .column(
            "dropped_allocs",
            Values::I64(vec![audit.counters.dropped_allocs as i64]),
        )
        .column("classified", Values::Bool(vec![opts.reachability]));
    let (stacks, frames) = stack_tables(&audit, &symbolizer);
    Ok(SnapshotTables {
        partition,
        tables: vec![
            ("snapshots", snapshots),
            ("blocks", block_table(&audit, kinds.as_deref())),
            ("stacks", stacks),
            ("frames", frames),
            ("classes", class_table(&audit)),
        ],
    })
}

fn block_table(audit: &Audit, kinds: Option<&[LeakKind]>) -> Table {
    let live = &audit.live;
    let col = |f: &dyn Fn(&leaktrail_recording::Block) -> i64| live.iter().map(f).collect();
    Table::default()
        .column("address", Values::I64(col(&|b| b.addr as i64)))
        .column("size", Values::I64(col(&|b| b.size as i64)))
        .column(
            "class",
            Values::I64(col(&|b| class_size(class_of(b.size)) as i64)),
        )
        .column("stack_id", Values::I64(col(&|b| i64::from(b.stack.0))))
        .column("thread", Values::I64(col(&|b| i64::from(b.tid))))
        .column(
            "time_unix_ns",
            Values::I64(col(&|b| (audit.start_realtime_ns + b.time_ns) as i64)),
        )
        .column(
            "reachability",
            Values::OptStr(match kinds {
                Some(k) => k.iter().map(|&k| Some(leak_kind_name(k))).collect(),
                None => vec![None; live.len()],
            }),
        )
}

/// The stacks table (one row per stack id that a live buffer uses) and the
/// frames table (one row per symbolized frame of those stacks).
fn stack_tables(audit: &Audit, symbolizer: &Symbolizer) -> (Table, Table) {
    let used: BTreeMap<StackId, ()> = audit.live.iter().map(|b| (b.stack, ())).collect();
    let (mut s_id, mut s_site_id, mut s_site, mut s_depth, mut s_fn) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut f = FrameRows::default();
    for &stack in used.keys() {
        let mut expanded = Vec::new();
        for (i, &pc) in audit.frames(stack).iter().enumerate() {
            // One address's frames: its inlined calls innermost first,
            // then the function that contains them (depth 0).
            let chain = symbolizer.stack_inlined(&[pc]);
            let n = chain.len();
            for (k, fr) in chain.into_iter().enumerate() {
                f.push(stack, expanded.len(), i, n - 1 - k, &fr);
                expanded.push(fr);
            }
        }
        let site = site_text(&SiteKey::physical(&expanded));
        s_id.push(i64::from(stack.0));
        s_site_id.push(site_id(&site));
        s_site.push(site);
        s_depth.push(audit.frames(stack).len() as i32);
        s_fn.push(expanded.iter().find_map(|fr| fr.function.clone()));
    }
    let stacks = Table::default()
        .column("stack_id", Values::I64(s_id))
        .column("site_id", Values::I64(s_site_id))
        .column("site", Values::Str(s_site))
        .column("depth", Values::I32(s_depth))
        .column("function", Values::OptStr(s_fn));
    (stacks, f.table())
}

#[derive(Default)]
struct FrameRows {
    stack_id: Vec<i64>,
    position: Vec<i32>,
    frame: Vec<i32>,
    inline_depth: Vec<i32>,
    address: Vec<i64>,
    function: Vec<Option<String>>,
    file: Vec<Option<String>>,
    line: Vec<Option<i32>>,
    column: Vec<Option<i32>>,
    module: Vec<Option<String>>,
    module_offset: Vec<i64>,
    kind: Vec<String>,
}

impl FrameRows {
    fn push(
        &mut self,
        stack: StackId,
        position: usize,
        frame: usize,
        depth: usize,
        f: &leaktrail_analysis::Frame,
    ) {
        self.stack_id.push(i64::from(stack.0));
        self.position.push(position as i32);
        self.frame.push(frame as i32);
        self.inline_depth.push(depth as i32);
        self.address.push(f.address as i64);
        self.function.push(f.function.clone());
        self.file.push(f.file.clone());
        self.line.push(f.line.map(|l| l as i32));
        self.column.push(f.column.map(|c| c as i32));
        self.module.push(f.module.clone());
        self.module_offset.push(f.module_offset as i64);
        self.kind.push(f.kind.name().to_string());
    }

    fn table(self) -> Table {
        Table::default()
            .column("stack_id", Values::I64(self.stack_id))
            .column("position", Values::I32(self.position))
            .column("frame", Values::I32(self.frame))
            .column("inline_depth", Values::I32(self.inline_depth))
            .column("address", Values::I64(self.address))
            .column("function", Values::OptStr(self.function))
            .column("file", Values::OptStr(self.file))
            .column("line", Values::OptI32(self.line))
            .column("column", Values::OptI32(self.column))
            .column("module", Values::OptStr(self.module))
            .column("module_offset", Values::I64(self.module_offset))
            .column("kind", Values::Str(self.kind))
    }
}

fn class_table(audit: &Audit) -> Table {
    let c = &audit.classes;
    let col = |f: &dyn Fn(&leaktrail_recording::audit::ClassStats) -> u64| {
        Values::I64(c.iter().map(|x| f(x) as i64).collect())
    };
    Table::default()
        .column("class", col(&|x| x.size))
        .column("live_count", col(&|x| x.live_count))
        .column("live_bytes", col(&|x| x.live_bytes))
        .column("allocs", col(&|x| x.allocs))
        .column("frees", col(&|x| x.frees))
}

/// Writes the tables of the snapshot at `path` under `out`.
pub fn write(path: &Path, out: &Path, opts: &ExportOptions) -> Result<Written, Error> {
    let t = tables(path, opts)?;
    let mut files = Vec::new();
    let mut blocks = 0;
    for (name, table) in &t.tables {
        if *name == "blocks" {
            blocks = table.rows();
        }
        let bytes = table.encode(
            name,
            &[
                ("leaktrail.schema_version", SCHEMA_VERSION.to_string()),
                ("leaktrail.table", name.to_string()),
            ],
        )?;
        let dir = out.join(name).join(&t.partition);
        std::fs::create_dir_all(&dir).map_err(|e| leaktrail_recording::Error::write(&dir, e))?;
        let file = dir.join("part-0.parquet");
        output::write_atomically(&file, &bytes)?;
        files.push(file);
    }
    Ok(Written {
        snapshot: path.to_path_buf(),
        partition: t.partition,
        files,
        blocks,
    })
}

/// Writes the tables of every snapshot `inputs` name (see
/// [`snapshot_files`]) under `out`.
pub fn export(inputs: &[PathBuf], out: &Path, opts: &ExportOptions) -> Result<Vec<Written>, Error> {
    snapshot_files(inputs)?
        .iter()
        .map(|p| write(p, out, opts))
        .collect()
}

/// The snapshot files `inputs` name: a recording directory stands for all
/// its snapshots, the one at exit included; a file for itself.
pub fn snapshot_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut paths = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let found = dir::snapshots::list(p)?;
            if found.is_empty() {
                return Err(leaktrail_analysis::Error::Insufficient(format!(
                    "{} has no snapshots (expected {}/snapshots/NNNN.core, as `leaktrail run` writes)",
                    p.display(),
                    p.display()
                ))
                .into());
            }
            paths.extend(found);
        } else {
            paths.push(p.clone());
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_are_escaped_as_hive_does() {
        assert_eq!(partition_value("web-01.example"), "web-01.example");
        assert_eq!(partition_value("a/b=c d"), "a%2Fb%3Dc%20d");
    }

    #[test]
    fn a_site_is_its_physical_frames() {
        let key = SiteKey(vec![("app".into(), 0x1234), (String::new(), 0x7f00)]);
        assert_eq!(site_text(&key), "app+0x1234;0x7f00");
        assert_ne!(site_id("app+0x1234"), site_id("app+0x1235"));
    }
}
