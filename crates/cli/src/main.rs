//! The `leaktrail` binary: argument parsing and dispatch only.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod exit;
mod job;
mod term;

/// Find out why a long-running Linux process keeps growing, and which line
/// of code holds the memory.
///
/// The usual path: `watch` (is it growing, where?), `run` (restart under the
/// tracer, snapshots as it goes), then the analyses over the recording.
#[derive(Parser)]
#[command(name = "leaktrail", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    /// Colour: auto (on a terminal, unless NO_COLOR is set; CLICOLOR_FORCE
    /// forces it), always, never. JSON is never coloured.
    #[arg(long, global = true, value_enum, default_value_t = term::ColorChoice::Auto, value_name = "WHEN")]
    color: term::ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole story on a bundled leaky program.
    Demo(cmd::demo::Args),
    /// Sample a process's memory over time: is it growing, and where?
    Watch(cmd::watch::Args),
    /// Run a command under the tracer: every live buffer keeps its stack.
    Run(cmd::run::Args),
    /// Inject the tracer into a running process and record it as `run` does.
    Attach(cmd::attach::Args),
    /// Take the tracer out of a process's way again (end `attach`).
    Detach(cmd::attach::DetachArgs),
    /// A live view of a traced process: RSS, regions, the fastest-growing sites.
    Top(cmd::top::Args),
    /// Trend verdict of a recording: growing, flat or inconclusive.
    Trend(cmd::trend::Args),
    /// Compare mappings between two samples or snapshots (a `pmap -x` diff).
    Maps(cmd::maps::Args),
    /// Stop a process for an instant and write it as a gdb-readable core.
    Snapshot(cmd::snapshot::Args),
    /// What a snapshot holds: process, threads, modules, regions, audit.
    Info(cmd::info::Args),
    /// heaptrack's summary: allocations, temporary allocations and peaks per site.
    Summary(cmd::summary::Args),
    /// Which allocation sites and size classes grow across snapshots, ranked.
    Growth(cmd::growth::Args),
    /// Flame graph of live bytes by allocation stack (SVG, folded, or the diff of two snapshots).
    Flamegraph(cmd::flamegraph::Args),
    /// Export live memory as a gzipped pprof profile (go tool pprof, Pyroscope, speedscope).
    Pprof(cmd::pprof::Args),
    /// Write snapshots' audit tables as Parquet (Hive-partitioned, versioned schema).
    Export(cmd::export::Args),
    /// Run a per-snapshot subcommand over many snapshots in parallel.
    Job(cmd::job::Args),
    /// One self-contained HTML page with the whole investigation of a recording.
    Report(cmd::report::Args),
    /// What is unreachable: definitely, indirectly, possibly lost buffers.
    Leaks(cmd::leaks::Args),
    /// Live buffers and bytes per size class, across snapshots.
    Caches(cmd::caches::Args),
    /// The live buffers, filtered, with their stacks or grouped by stack.
    Bufs(cmd::bufs::Args),
    /// What an address is: buffer, global, thread stack, JIT code, mapping.
    Whatis(cmd::whatis::Args),
    /// JS objects on V8's heap by constructor, and V8's own heap numbers (node).
    Jsobjects(cmd::jsobjects::Args),
    /// One JS object with its properties and elements (node).
    Jsprint(cmd::jsprint::Args),
    /// Who points at an address (with masks for tagged pointers), and the
    /// paths back to a root.
    Refs(cmd::refs::Args),
    /// The words at an address, annotated.
    Dump(cmd::dump::Args),
    /// Shell completions (bash, zsh, fish, elvish, powershell) on standard output.
    Completions(cmd::completions::Args),
    /// Man pages, generated from these definitions.
    Man(cmd::man::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    term::init(cli.color);
    let result = match cli.command {
        Command::Demo(a) => cmd::demo::run(a),
        Command::Watch(a) => cmd::watch::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Attach(a) => cmd::attach::run(a),
        Command::Detach(a) => cmd::attach::detach(a),
        Command::Top(a) => cmd::top::run(a),
        Command::Trend(a) => cmd::trend::run(a),
        Command::Maps(a) => cmd::maps::run(a),
        Command::Snapshot(a) => cmd::snapshot::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Summary(a) => cmd::summary::run(a),
        Command::Growth(a) => cmd::growth::run(a),
        Command::Flamegraph(a) => cmd::flamegraph::run(a),
        Command::Pprof(a) => cmd::pprof::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Job(a) => cmd::job::run(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Leaks(a) => cmd::leaks::run(a),
        Command::Caches(a) => cmd::caches::run(a),
        Command::Bufs(a) => cmd::bufs::run(a),
        Command::Whatis(a) => cmd::whatis::run(a),
        Command::Jsobjects(a) => cmd::jsobjects::run(a),
        Command::Jsprint(a) => cmd::jsprint::run(a),
        Command::Refs(a) => cmd::refs::run(a),
        Command::Dump(a) => cmd::dump::run(a),
        Command::Completions(a) => cmd::completions::run(a),
        Command::Man(a) => cmd::man::run(a),
    };
    exit::finish(result)
}
