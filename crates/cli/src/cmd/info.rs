//! `leaktrail info`: what a snapshot holds.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::Summary;
use leaktrail_recording::Snapshot;
use leaktrail_report::json;

/// Flags of `leaktrail info`.
#[derive(clap::Args)]
pub struct Args {
    /// The snapshot (a leaktrail, gcore or kernel core file).
    snap: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let snap = Snapshot::open(&super::local(&args.snap)?)?;
    let summary = leaktrail_analysis::summary::of(&snap);
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(json::to_string(&json::InfoDocument::from(&summary))?.as_bytes())?;
    } else {
        out.write_all(text(&summary).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

// TODO(report): move this table into `leaktrail-report` once its text
// module has a generic table renderer; it is printing only.
fn text(s: &Summary) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "snapshot   {} ({:.1} MiB, written by {})",
        s.path,
        mib(s.file_bytes),
        s.writer
    );
    let _ = writeln!(
        o,
        "process    {} {}",
        s.pid.map_or("?".into(), |p| p.to_string()),
        s.cmdline.as_deref().or(s.comm.as_deref()).unwrap_or("?")
    );
    if let Some(exe) = &s.exe {
        let _ = writeln!(o, "exe        {exe}");
    }
    if let Some(t) = &s.time_utc {
        let _ = writeln!(o, "time       {t}");
    }
    if let Some(p) = s.pause_ns {
        let _ = writeln!(o, "pause      {:.1} ms", p as f64 / 1e6);
    }
    if let Some(m) = &s.memory_mode {
        let _ = writeln!(o, "memory     {m}");
    }
    let _ = writeln!(o, "threads    {}", s.threads.len());
    for t in &s.threads {
        let _ = writeln!(o, "  tid {:<8} pc {:#014x}  sp {:#014x}", t.tid, t.pc, t.sp);
    }
    let _ = writeln!(o, "regions    {:.1} MiB captured", mib(s.captured_bytes));
    let _ = writeln!(
        o,
        "  {:<8} {:>8} {:>12} {:>12}",
        "kind", "mappings", "mapped MiB", "captured MiB"
    );
    for k in &s.regions {
        let _ = writeln!(
            o,
            "  {:<8} {:>8} {:>12.1} {:>12.1}",
            k.kind,
            k.mappings,
            mib(k.mapped_bytes),
            mib(k.captured_bytes)
        );
    }
    let _ = writeln!(o, "modules    {}", s.modules.len());
    for m in &s.modules {
        let _ = writeln!(
            o,
            "  {:#014x} {} {}",
            m.base,
            m.path,
            m.build_id
                .as_deref()
                .map(|b| format!("[{b}]"))
                .unwrap_or_default()
        );
    }
    if let Some(n) = s.perf_map_lines {
        let _ = writeln!(o, "perf map   {n} lines");
    }
    let a = &s.audit;
    if !a.present {
        let _ = writeln!(
            o,
            "audit      none (the process was not running under the leaktrail tracer)"
        );
    } else if let (Some(blocks), Some(bytes)) = (a.live_blocks, a.live_bytes) {
        let _ = writeln!(
            o,
            "audit      {blocks} live blocks, {bytes} bytes, {} stacks{}{}{}{}",
            a.stacks.unwrap_or(0),
            a.sample_rate
                .filter(|&r| r > 0)
                .map(|r| format!(" (sampled: one block per {r} bytes allocated on average)"))
                .unwrap_or_default(),
            a.dropped_allocs
                .filter(|&d| d > 0)
                .map(|d| format!(", {d} allocations not recorded"))
                .unwrap_or_default(),
            a.busy_shards
                .filter(|&b| b > 0)
                .map(|b| format!(", {b} shards mid-update"))
                .unwrap_or_default(),
            a.corrupt_entries
                .filter(|&c| c > 0)
                .map(|c| format!(", {c} corrupt entries skipped"))
                .unwrap_or_default()
        );
    } else {
        let _ = writeln!(
            o,
            "audit      header at {:#x}, not decodable: {}",
            a.headers[0],
            a.error
                .as_deref()
                .unwrap_or("its tables are not in this snapshot")
        );
    }
    let _ = writeln!(o, "allocator  {}", s.allocator.describe());
    if let Some(w) = &s.heap_walk {
        heap_walk(&mut o, w);
    }
    for w in &s.warnings {
        let _ = writeln!(o, "warning    {w}");
    }
    o
}

fn heap_walk(o: &mut String, w: &leaktrail_analysis::summary::WalkSummary) {
    if let Some(e) = &w.error {
        let _ = writeln!(o, "malloc     not walked: {e}");
        return;
    }
    let _ = writeln!(
        o,
        "malloc     {} chunks in use, {} bytes ({} mmapped); {} arenas, {} heaps; free: {} in tcache, {} in fastbins, {} others (glibc state from {})",
        w.chunks, w.bytes, w.mmapped, w.arenas, w.heaps, w.tcache_chunks, w.fastbin_chunks, w.free_chunks, w.source
    );
    if let Some(d) = &w.difference {
        if d.before_attach > 0 {
            let _ = writeln!(
                o,
                "  {} chunks in use are from before the attach (not in the audit: the analyses take them from this walk, without stacks)",
                d.before_attach
            );
        }
        if d.unsampled > 0 {
            let _ = writeln!(
                o,
                "  {} chunks in use are not in the sample (leaks, refs and whatis take them from this walk, without stacks)",
                d.unsampled
            );
        }
        if d.only_walked + d.only_audited + d.size_mismatch == 0 {
            let _ = writeln!(
                o,
                "  the walk and the audit agree on every live block ({} chunks are the tracer's own)",
                d.tracer_own
            );
        } else {
            let _ = writeln!(
                o,
                "  the walk and the audit differ: {} chunks in use not in the audit, {} audited blocks not in use, {} sizes that do not fit ({} chunks are the tracer's own)",
                d.only_walked, d.only_audited, d.size_mismatch, d.tracer_own
            );
            for &(a, ws, aus) in &d.examples {
                let _ = writeln!(o, "    {a:#x}  walked {ws}  audited {aus}");
            }
        }
    }
    for p in &w.problems {
        let _ = writeln!(o, "  problem: {p}");
    }
}
