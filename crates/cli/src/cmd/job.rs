//! `leaktrail job`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::bad_input;
use crate::job::{self, Job, Task};
use leaktrail_store::{S3Url, Store};

/// Flags of `leaktrail job`.
#[derive(clap::Args)]
#[command(after_help = "\
Runs one per-snapshot subcommand over many snapshots in parallel, each as a child \
`leaktrail` process: a corrupt or failing input is reported at the end and never stops \
the others. Each input's output goes to OUT/<name>.<ext>, <name> being the snapshot's \
file name without its extension (with its folders where names clash), <ext> svg for \
flamegraph (folded with --folded), pb.gz for pprof, json with --json, else txt. \
Inputs may be s3:// URLs: a snapshot object, or a prefix standing for every *.core \
under it; each child reads its input from the store. When every input is a URL and \
there is no -o, each output goes back into the store beside its input \
(s3://B/rec/snapshots/0001.core -> .../0001.svg); -o s3://B/PREFIX/ puts them there. \
Exits 1 if any input failed. job's own flags (-j, -o, --ext, -q) may stand before or \
after the subcommand's name; a -o after it is still job's folder, as each output's file is \
named by job.

Examples:
  leaktrail job flamegraph --size 2049..4096 -o out/ -- rec/snapshots/*.core
  leaktrail job -j 8 leaks --json -o leaks/ -- cores/*.core
  leaktrail job pprof -o profiles/ -- rec/snapshots/*.core
  leaktrail job flamegraph -- s3://fleet/api/")]
pub struct Args {
    /// Parallel children [default: one per core].
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Folder for the outputs (created if missing), or `s3://BUCKET/PREFIX`
    /// [default: ., or beside each input when every input is a URL].
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Extension of the outputs [default: by subcommand].
    #[arg(long, value_name = "EXT")]
    pub ext: Option<String>,
    /// Do not draw the progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// The subcommand and its flags, then `--` and the snapshots.
    #[arg(
        required = true,
        value_name = "SUBCOMMAND [ARGS] -- SNAP",
        allow_hyphen_values = true,
        trailing_var_arg = true
    )]
    pub command: Vec<String>,
}

/// Subcommands that take one snapshot and write one result.
const PER_SNAPSHOT: &[&str] = &[
    "flamegraph",
    "pprof",
    "leaks",
    "caches",
    "bufs",
    "info",
    "whatis",
    "refs",
    "dump",
];

/// job's own flags, as found among the subcommand's: people write
/// `job flamegraph -o out/ -- ...` as often as `job -o out/ flamegraph -- ...`
/// (issue 17), and none of the per-snapshot subcommands has a `-j`,
/// `--ext` or `-q` of its own; their `-o FILE` is job's to set per input.
#[derive(Debug, Default, PartialEq)]
struct Own {
    jobs: Option<String>,
    out: Option<String>,
    ext: Option<String>,
    quiet: bool,
}

/// Takes job's own flags out of `flags` (the subcommand's, before `--`),
/// in any of clap's spellings (`-o DIR`, `-oDIR`, `--out DIR`,
/// `--out=DIR`); returns them and what is left, or why not.
fn take_own(flags: &[String]) -> Result<(Own, Vec<String>), String> {
    let mut own = Own::default();
    let mut rest = Vec::new();
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        let (slot, inline) = match f.as_str() {
            "-q" | "--quiet" => {
                own.quiet = true;
                continue;
            }
            "-j" | "--jobs" => (&mut own.jobs, None),
            "-o" | "--out" => (&mut own.out, None),
            "--ext" => (&mut own.ext, None),
            s => match (s.split_once('='), s.get(..2)) {
                (Some(("--jobs", v)), _) => (&mut own.jobs, Some(v)),
                (Some(("--out", v)), _) => (&mut own.out, Some(v)),
                (Some(("--ext", v)), _) => (&mut own.ext, Some(v)),
                (_, Some("-j")) => (&mut own.jobs, s.get(2..)),
                (_, Some("-o")) => (&mut own.out, s.get(2..)),
                _ => {
                    rest.push(f.clone());
                    continue;
                }
            },
        };
        let value = match inline {
            Some(v) => v.to_string(),
            None => it
                .next()
                .ok_or_else(|| format!("job: {f} needs a value"))?
                .clone(),
        };
        if slot.replace(value).is_some() {
            return Err(format!("job: {f} given twice"));
        }
    }
    Ok((own, rest))
}

/// Fills in `args` from the flags found after the subcommand's name;
/// a flag given on both sides is refused, as clap refuses a repeated one.
fn merge(args: &mut Args, own: Own) -> Result<(), String> {
    fn set<T>(slot: &mut Option<T>, v: Option<T>, name: &str) -> Result<(), String> {
        match (slot.is_some(), v) {
            (true, Some(_)) => Err(format!(
                "job: {name} given both before and after the subcommand"
            )),
            (_, Some(v)) => {
                *slot = Some(v);
                Ok(())
            }
            (_, None) => Ok(()),
        }
    }
    let jobs = own
        .jobs
        .map(|j| {
            j.parse::<usize>()
                .map_err(|_| format!("job: -j expects a number of children, not {j:?}"))
        })
        .transpose()?;
    set(&mut args.jobs, jobs, "-j")?;
    set(&mut args.out, own.out.map(PathBuf::from), "-o")?;
    set(&mut args.ext, own.ext, "--ext")?;
    args.quiet |= own.quiet;
    Ok(())
}

/// Runs the subcommand.
pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    let all = std::mem::take(&mut args.command);
    let Some(sep) = all.iter().position(|a| a == "--") else {
        bad_input!("job: expected `SUBCOMMAND [ARGS] -- SNAP...` (the snapshots after `--`)");
    };
    let (command, snaps) = (&all[..sep], &all[sep + 1..]);
    let snaps = expand_urls(snaps)?;
    if command.is_empty() || snaps.is_empty() {
        bad_input!("job: expected `SUBCOMMAND [ARGS] -- SNAP...` with at least one snapshot");
    }
    let sub = command[0].as_str();
    if !PER_SNAPSHOT.contains(&sub) {
        bad_input!(
            "job runs a per-snapshot subcommand ({}), not {sub:?}",
            PER_SNAPSHOT.join(", ")
        );
    }
    let sub = sub.to_string();
    let sub = sub.as_str();
    let (own, flags) = match take_own(&command[1..]) {
        Ok(v) => v,
        Err(e) => bad_input!("{e}"),
    };
    if let Err(e) = merge(&mut args, own) {
        bad_input!("{e}");
    }
    if flags
        .iter()
        .any(|f| f == "--output" || f.starts_with("--output="))
    {
        bad_input!(
            "job names each output itself (in the folder given by -o DIR); drop the subcommand's --output"
        );
    }
    let command: Vec<String> = std::iter::once(command[0].clone())
        .chain(flags.iter().cloned())
        .collect();
    let to_store = args.out.as_deref().is_some_and(leaktrail_store::is_url)
        || (args.out.is_none() && snaps.iter().all(|p| leaktrail_store::is_url(p)));
    let out = match (&args.out, to_store) {
        (_, true) => leaktrail_store::cache_dir()
            .join("spool")
            .join(format!("job-{}", std::process::id())),
        (Some(o), false) => o.clone(),
        (None, false) => PathBuf::from("."),
    };
    let shown = match (&args.out, to_store) {
        (Some(o), _) => o.display().to_string(),
        (None, true) => "the store, next to each input".to_string(),
        (None, false) => ".".to_string(),
    };
    let out_url = args
        .out
        .as_deref()
        .filter(|o| leaktrail_store::is_url(o))
        .map(|o| S3Url::parse(&o.to_string_lossy()))
        .transpose()?;
    let has = |flag: &str| flags.iter().any(|f| f == flag);
    let ext = args.ext.clone().unwrap_or_else(|| {
        match sub {
            "pprof" => "pb.gz",
            "flamegraph" if has("--folded") => "folded",
            "flamegraph" => "svg",
            _ if has("--json") => "json",
            _ => "txt",
        }
        .to_string()
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let names = job::output_names(&snaps);
    let tasks: Vec<Task> = snaps
        .iter()
        .zip(names)
        .map(|(input, name)| -> anyhow::Result<Task> {
            let file = format!("{name}.{ext}");
            let upload = match &out_url {
                Some(url) => Some(url.join(&file)),
                None if to_store => Some(beside(input, &ext)?),
                None => None,
            };
            Ok(Task {
                input: input.clone(),
                output: out.join(file),
                upload,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let stores = Stores::default();
    let send = |file: &std::path::Path, url: &S3Url| {
        stores
            .upload(file, url)
            .map_err(|e| format!("uploading to {url}: {e}"))
    };
    let workers = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 0 {
        bad_input!("-j 0: at least one worker is needed");
    }
    let bar =
        (!args.quiet).then(|| crate::term::Progress::bar(tasks.len() as u64, sub.to_string()));
    let progress = |done: usize, failed: usize, _total: usize| {
        if let Some(b) = &bar {
            b.set(done as u64);
            if failed > 0 {
                b.say(format!("{sub} ({failed} failed)"));
            }
        }
    };
    let exe = std::env::current_exe().context("finding the leaktrail binary to run")?;
    let start = std::time::Instant::now();
    let outcomes = job::run(
        &Job {
            exe,
            command: &command,
            output_flag: sub == "pprof",
            workers,
            progress: &progress,
            send: &send,
        },
        &tasks,
    );
    drop(bar);
    let failed: Vec<_> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    eprintln!(
        "job {sub}: {} inputs, {} ok, {} failed, {} workers, {:.1}s; outputs in {}",
        outcomes.len(),
        outcomes.len() - failed.len(),
        failed.len(),
        workers.min(tasks.len()),
        start.elapsed().as_secs_f64(),
        shown
    );
    if to_store {
        let _ = std::fs::remove_dir_all(&out);
    }
    for o in &failed {
        eprintln!(
            "  failed: {}: {}",
            o.task.input.display(),
            o.error.as_deref().unwrap_or("")
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The inputs, each `s3://` prefix replaced by the snapshots under it
/// (objects named `*.core`, in key order); an object URL stays itself, and
/// each child reads it through its mirror.
fn expand_urls(inputs: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if !leaktrail_store::is_url(std::path::Path::new(input)) || input.ends_with(".core") {
            out.push(PathBuf::from(input));
            continue;
        }
        let url = S3Url::parse(input)?;
        let mut found: Vec<String> = Store::for_url(&url)?
            .list(&url)?
            .into_iter()
            .map(|o| o.url)
            .filter(|u| {
                u.key.ends_with(".core")
                    && !u.key.rsplit('/').next().is_some_and(|n| n.starts_with('.'))
            })
            .map(|u| u.to_string())
            .collect();
        if found.is_empty() {
            bad_input!("{input}: no snapshots (*.core) under this prefix");
        }
        found.sort();
        out.extend(found.into_iter().map(PathBuf::from));
    }
    Ok(out)
}

/// `s3://B/DIR/NAME.core`'s output with extension `ext`: `s3://B/DIR/NAME.EXT`.
fn beside(input: &std::path::Path, ext: &str) -> anyhow::Result<S3Url> {
    let mut url = S3Url::parse(&input.to_string_lossy())?;
    let stem = url
        .key
        .strip_suffix(".core")
        .unwrap_or(&url.key)
        .to_string();
    url.key = format!("{stem}.{ext}");
    Ok(url)
}

/// One [`Store`] per bucket, made on first use, shared by the workers.
#[derive(Default)]
struct Stores(std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Store>>>);

impl Stores {
    fn upload(&self, file: &std::path::Path, url: &S3Url) -> anyhow::Result<()> {
        let store = {
            let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match all.get(&url.bucket) {
                Some(s) => s.clone(),
                None => {
                    let s = std::sync::Arc::new(Store::for_url(url)?);
                    all.insert(url.bucket.clone(), s.clone());
                    s
                }
            }
        };
        store.send(file, &url.key)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn own_flags_are_taken_from_after_the_subcommand_in_every_spelling() {
        let (own, rest) = take_own(&strings(&[
            "--size",
            "2049..4096",
            "-o",
            "out/",
            "-j2",
            "--ext=x",
            "-q",
            "--folded",
        ]))
        .expect("parsed");
        assert_eq!(
            own,
            Own {
                jobs: Some("2".into()),
                out: Some("out/".into()),
                ext: Some("x".into()),
                quiet: true,
            }
        );
        assert_eq!(rest, strings(&["--size", "2049..4096", "--folded"]));
        assert_eq!(
            take_own(&strings(&["-oout", "--jobs", "3", "--out=y"])),
            Err("job: --out=y given twice".to_string())
        );
    }

    #[test]
    fn a_flag_without_its_value_or_given_twice_is_refused() {
        assert_eq!(
            take_own(&strings(&["--json", "-o"])),
            Err("job: -o needs a value".to_string())
        );
        assert_eq!(
            take_own(&strings(&["-o", "a", "--out", "b"])),
            Err("job: --out given twice".to_string())
        );
    }
}
