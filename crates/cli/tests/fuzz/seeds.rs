//! The seeds, made once per test run from the fixtures: real files of
//! every kind leaktrail reads.
//!
//! | seed     | what                                                      |
//! |----------|-----------------------------------------------------------|
//! | `full`   | `run` recording of `growth_sites`, two `--memory full` snapshots |
//! | `tables` | the same with one `--memory tables` snapshot              |
//! | `none`   | the same with one `--memory none` snapshot                |
//! | `roots`  | `run` recording of `leaks_roots`, one snapshot (20 blocks)  |
//! | `gcore`  | gdb's `gcore` of the same process (`core`)                |
//! | `watch`  | the `watch` recording under `fixtures/recordings/`        |

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use crate::corpus::Entry;
use crate::mutate::Anchors;
use crate::support::{self, leaktrail, Pipe, Running};
use crate::target::Kind;

/// One file of a seed, read once, with its anchors.
struct File {
    seed: String,
    file: String,
    bytes: Vec<u8>,
    anchors: Anchors,
}

pub struct Seeds {
    root: PathBuf,
    files: Vec<File>,
    /// A live block's address in the `full` seed's first snapshot, for
    /// `whatis`, `refs` and `dump`.
    addr: String,
}

/// A made input.
pub struct Input {
    pub kind: Kind,
    pub path: PathBuf,
    pub bytes: u64,
}

/// What each seed offers to mutate, whether a mutation of it is read as a
/// recording, and how often the fuzzer picks it: a recording with
/// snapshots takes 5 to 15 s in a debug build (`growth` and the report
/// symbolize every stack), a core under a second, a `watch` recording
/// (the one that exercises `meta.json`, `samples.jsonl` and smaps detail)
/// a few milliseconds.
const TARGETS: &[(&str, &str, bool, u32)] = &[
    ("roots", "snapshots/0001.core", false, 16),
    ("roots", "snapshots/0001.core", true, 1),
    ("full", "snapshots/0001.core", false, 4),
    ("full", "snapshots/0002.core", false, 1),
    ("tables", "snapshots/0001.core", false, 3),
    ("none", "snapshots/0001.core", false, 3),
    ("gcore", "core", false, 1),
    ("watch", "meta.json", true, 2),
    ("watch", "samples.jsonl", true, 4),
    ("watch", "smaps/000000.json", true, 2),
    ("watch", "smaps/000029.json", true, 1),
];

pub fn get() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(build)
}

fn build() -> Seeds {
    let root = support::scratch("fuzz_seeds");
    let fifo = std::path::Path::new(crate::mutate::FIFO);
    if !std::fs::symlink_metadata(fifo).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_fifo()
    }) {
        let _ = std::fs::remove_file(fifo);
        let c = std::ffi::CString::new(crate::mutate::FIFO).expect("no NUL");
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    }
    let exe = support::fixture("growth_sites", &[]);
    for (name, memory, steps) in [
        ("full", "full", 2),
        ("tables", "tables", 1),
        ("none", "none", 1),
    ] {
        let steps_arg = steps.to_string();
        let argv = [exe.as_os_str(), steps_arg.as_ref()];
        support::record_in_steps(&root.join(name), memory, &argv, steps);
    }

    // A small one (20 live blocks: fast to analyse, so most runs go
    // here), and gdb's core of the same process: no note of ours, the
    // audit region found by its magic.
    support::preload_library();
    let roots = support::fixture("leaks_roots", &[]);
    let mut run = Running::start(
        leaktrail()
            .args(["run", "--every", "0", "--out"])
            .arg(root.join("roots"))
            .arg("--")
            .arg(&roots)
            .stdin(Stdio::piped()),
        Pipe::Stdout,
        "ready ",
    );
    let pid: i32 = run.ready["ready ".len()..]
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a pid on the ready line");
    let gdir = root.join("gcore");
    std::fs::create_dir_all(&gdir).expect("mkdir gcore");
    let core = support::gcore(pid, &gdir.join("gcore"));
    std::fs::rename(core, gdir.join("core")).expect("rename gcore");
    support::snapshot_into(&root.join("roots"), &[]);
    run.send(b"q");
    run.wait();

    let watch = support::repo_root().join("fixtures/recordings/watch-malloc-leak-v1");
    for f in crate::target::walk(&watch) {
        let rel = f.strip_prefix(&watch).expect("under the recording");
        let to = root.join("watch").join(rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&f, &to).expect("copy the watch recording");
    }

    let mut files: Vec<File> = Vec::new();
    for &(seed, file, _, _) in TARGETS {
        if files.iter().any(|f| f.seed == seed && f.file == file) {
            continue;
        }
        let bytes = std::fs::read(root.join(seed).join(file))
            .unwrap_or_else(|e| panic!("seed {seed} {file}: {e}"));
        files.push(File {
            seed: seed.into(),
            file: file.into(),
            anchors: Anchors::of(&bytes),
            bytes,
        });
    }
    let snap = leaktrail_recording::Snapshot::open(&root.join("full/snapshots/0001.core"))
        .expect("the full seed opens");
    let heap = leaktrail_analysis::Heap::open(&snap).expect("the full seed has an audit");
    let addr = format!("{:#x}", heap.audit.live.first().expect("a live block").addr);
    drop(heap);
    Seeds { root, files, addr }
}

impl Seeds {
    /// Every seed file, unmutated, each as many times as its weight.
    pub fn weighted(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for (e, &(.., weight)) in self.targets().into_iter().zip(TARGETS) {
            out.extend(std::iter::repeat_n(e, weight as usize));
        }
        out
    }

    /// Every seed file, unmutated.
    pub fn targets(&self) -> Vec<Entry> {
        TARGETS
            .iter()
            .map(|&(seed, file, recording, _)| Entry {
                seed: seed.into(),
                file: file.into(),
                recording,
                ops: Vec::new(),
            })
            .collect()
    }

    fn file(&self, e: &Entry) -> Option<&File> {
        self.files
            .iter()
            .find(|f| f.seed == e.seed && f.file == e.file)
    }

    pub fn anchors(&self, e: &Entry) -> &Anchors {
        &self.file(e).expect("a seed file").anchors
    }

    pub fn bytes(&self, e: &Entry) -> &[u8] {
        &self.file(e).expect("a seed file").bytes
    }

    /// Writes the input of `e` under `dir`: a core by itself, or a copy of
    /// the seed's recording (hard links but for the mutated file).
    pub fn make(&self, e: &Entry, dir: &Path) -> Option<Input> {
        let f = self.file(e)?;
        let bytes = f.anchors.apply(&f.bytes, &e.ops);
        if !e.recording {
            let path = dir.join("input.core");
            std::fs::write(&path, &bytes).expect("write the input");
            return Some(Input {
                kind: Kind::Core,
                path,
                bytes: bytes.len() as u64,
            });
        }
        let rec = dir.join("input");
        let _ = std::fs::remove_dir_all(&rec);
        let seed = self.root.join(&e.seed);
        for from in crate::target::walk(&seed) {
            let rel = from.strip_prefix(&seed).expect("under the seed");
            let to = rec.join(rel);
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            if rel == Path::new(&e.file) {
                std::fs::write(&to, &bytes).expect("write the input");
            } else {
                std::fs::hard_link(&from, &to).expect("link a seed file");
            }
        }
        let total = crate::target::walk(&rec)
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        Some(Input {
            kind: Kind::Recording,
            path: rec,
            bytes: total,
        })
    }

    /// The binary's commands over `input`.
    pub fn commands(&self, input: &Input) -> Vec<Vec<OsString>> {
        let p = input.path.as_os_str();
        let a = OsStr::new(&self.addr);
        let v = |args: &[&OsStr]| args.iter().map(|s| s.to_os_string()).collect();
        match input.kind {
            Kind::Core => vec![
                v(&["info".as_ref(), p]),
                v(&["leaks".as_ref(), p]),
                v(&["caches".as_ref(), p]),
                v(&["bufs".as_ref(), p]),
                v(&["whatis".as_ref(), p, a]),
                v(&["refs".as_ref(), p, a]),
                v(&["dump".as_ref(), p, a]),
                v(&["maps".as_ref(), "diff".as_ref(), p, p]),
                v(&["growth".as_ref(), p, p]),
            ],
            Kind::Recording => {
                let first = format!("{}@first", input.path.display());
                let html = input.path.with_extension("html");
                vec![
                    v(&["trend".as_ref(), p]),
                    v(&["growth".as_ref(), p]),
                    v(&["caches".as_ref(), p]),
                    v(&[
                        "maps".as_ref(),
                        "diff".as_ref(),
                        first.as_ref(),
                        "@last".as_ref(),
                    ]),
                    v(&["report".as_ref(), p, "-o".as_ref(), html.as_os_str()]),
                ]
            }
        }
    }
}
