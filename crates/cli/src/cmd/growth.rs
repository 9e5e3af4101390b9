//! `leaktrail growth`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use leaktrail_analysis::{fleet, growth, investigation, v8};
use leaktrail_report::json;

/// Flags of `leaktrail growth`.
#[derive(clap::Args)]
#[command(
    after_help = "For every allocation site (stack and size class) and every size class, the \
    live buffers and bytes across the snapshots in capture order, with a Theil-Sen slope, \
    Kendall's tau (monotonic), how steadily the rise came (steady), and a score: the fitted \
    rise x monotonic x steady^2. Steady growth outranks a large flat population (no rise) and \
    a one-off burst (not steady). Snapshots of an untraced process (gcores, kernel cores, \
    `leaktrail snapshot` of a plain program) have no stacks: their blocks come from glibc's \
    heap and each site is a type (`[type] Widget`, a C++ class) or a size class and hint \
    (`[size 4096]`).\n\n\
    Across hosts: given one folder or s3:// prefix holding several recordings, each \
    recording is compared over its own snapshots, and each site's slope, rise and score \
    are summed over the recordings where it rose; a recording's host is its deepest \
    host=NAME folder (the Hive layout service=api/host=web-1/...), else its path. \
    Example: leaktrail growth s3://fleet/service=api/"
)]
pub struct Args {
    /// A recording directory (all its snapshots) or snapshot files; at least two snapshots.
    /// A folder or `s3://` prefix holding several recordings (folders with meta.json
    /// or snapshots/) ranks sites per host and across all of them.
    #[arg(required = true, value_name = "DIR|SNAP")]
    pub inputs: Vec<PathBuf>,
    /// Show this many classes and suspects (0: all).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Frames shown per stack (0: all).
    #[arg(long, default_value_t = 12)]
    pub depth: usize,
    /// Print one JSON document instead of text (every growing site).
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let inputs = super::locals(&args.inputs)?;
    if let [root] = inputs.as_slice() {
        if root.is_dir() && !fleet::is_recording(root) && fleet::recordings_under(root).len() >= 2 {
            return across_hosts(&args, root);
        }
    }
    let g = crate::term::step("reading and symbolizing snapshots", || {
        growth::open(&inputs)
    })?;
    // A series of full snapshots of node: its JS heap too.
    let paths: Vec<PathBuf> = g.snapshots.iter().map(|o| o.path.clone()).collect();
    let js = crate::term::step("reading the JS heap", || v8::growth_of(&paths))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = json::GrowthDocument::from(&g).with_js_heap(&g, js.as_ref());
        write!(out, "{}", json::to_string(&doc)?)?;
    } else {
        let mut text = leaktrail_report::growth::text(&g, args.top, args.depth);
        if let Some(j) = &js {
            text.push_str(&leaktrail_report::growth::js_heap_text(j, args.top));
        }
        // Malloc sites and the JS heap ranked together, in the report's
        // headline words (or its "no growth above noise").
        let first = investigation::first_suspect(Some(&g), js.as_ref());
        text.push_str(&format!(
            "\nfirst suspect: {}\n",
            leaktrail_report::diagnosis::headline_of(
                first.as_ref(),
                Some((g.snapshots.len(), g.noise_bytes))
            )
        ));
        crate::term::print(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `growth` of a folder or prefix holding several recordings: each over
/// its own snapshots, then combined (see `leaktrail_analysis::fleet`).
fn across_hosts(args: &Args, root: &Path) -> anyhow::Result<ExitCode> {
    let mut f = crate::term::step(
        "reading and symbolizing every recording's snapshots",
        || fleet::open(root),
    )?;
    // Name recordings as the user gave them: a URL stays a URL.
    let given = &args.inputs[0];
    let shown = |p: &Path| match p.strip_prefix(root) {
        Ok(rel) if leaktrail_store::is_url(given) => {
            let url = leaktrail_store::S3Url::parse(&given.to_string_lossy());
            url.map_or_else(
                |_| p.to_path_buf(),
                |u| PathBuf::from(u.join(&rel.to_string_lossy()).to_string()),
            )
        }
        Ok(rel) => given.join(rel),
        Err(_) => p.to_path_buf(),
    };
    for h in &mut f.hosts {
        h.recording = shown(&h.recording);
    }
    for s in &mut f.skipped {
        s.recording = shown(&s.recording);
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        write!(
            out,
            "{}",
            json::to_string(&json::FleetGrowthDocument::from(&f))?
        )?;
    } else {
        crate::term::print(&leaktrail_report::fleet::text(&f, args.top, args.depth))?;
    }
    Ok(ExitCode::SUCCESS)
}
