//! Feeding one input to the readers and analyses, and judging the result.
//!
//! In process: a forked child of this test binary opens the input with the
//! library (every accessor of `Snapshot`, the audit decoder, the recording
//! reader) and runs every analysis and renderer over it, under an
//! allocation cap proportional to the input's size (see `alloc`) and an
//! address-space limit, while the parent waits with a deadline. A fork per
//! input keeps one bad input from taking the harness down, costs about a
//! millisecond, and starts each run with the parent's warm state.
//!
//! Through the binary: `leaktrail CMD INPUT` under `prlimit --as` and
//! `timeout`, which must exit 0 or 2 with one line and never print a
//! panic.

use std::io::Read;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use leaktrail_analysis::refs::Matcher;
use leaktrail_analysis::symbolize::Symbolizer;
use leaktrail_analysis::{
    audit_dump, bufs, caches, dump, growth, investigation, leaks, maps_diff, owner, refs, summary,
    trend, whatis, Heap,
};
use leaktrail_recording::{audit, Recording, Snapshot};
use leaktrail_report::{heap as render, html, json};

use crate::alloc;

/// What an input is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// A core file, by itself.
    Core,
    /// A recording directory.
    Recording,
}

/// How long an input may take before it counts as a hang: a recording
/// with snapshots takes up to 15 s in a debug build on a busy machine
/// (symbolizing libc from its compressed debug info), a core a few; a
/// hang is forever.
pub fn deadline(kind: Kind) -> Duration {
    match kind {
        Kind::Core => Duration::from_secs(90),
        Kind::Recording => Duration::from_secs(240),
    }
}

/// Bytes an input's run may allocate: what a valid file of this size
/// needs, with room to spare. Valid seeds peak under 2 MiB for a 4 MB
/// core unsymbolized, and at about 45 MiB symbolized (libc's debug info,
/// whatever the input); the fuzz test prints each seed's peak.
pub fn cap_for(input_bytes: u64, symbolize: bool) -> usize {
    let base = if symbolize { 96 << 20 } else { 16 << 20 };
    base + 8 * input_bytes as usize
}

/// A failure: what kind (the same kind means the same finding while
/// minimising) and the whole line.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: String,
    pub line: String,
}

impl Finding {
    fn new(kind: impl Into<String>, line: impl Into<String>) -> Finding {
        Finding {
            kind: kind.into(),
            line: line.into(),
        }
    }
}

/// Runs every reader and analysis over `input` in a forked child; returns
/// the peak of bytes allocated, or the finding. Without `symbolize`, a
/// core's analyses name no frames: reading the debug info of the files a
/// core names costs seconds in a debug build, and most inputs differ from
/// their seed in nothing the symbolizer reads.
pub fn in_process(kind: Kind, input: &Path, symbolize: bool) -> Result<usize, Finding> {
    let deadline = deadline(kind);
    let bytes = input_bytes(kind, input);
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let made = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(made, 0, "pipe2");
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: the child only runs the analyses, which need no other thread
    // of this process (they start their own), then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(rd) };
        child(kind, input, symbolize, bytes, wr);
    }
    // SAFETY: the parent's copy of the write end, no longer needed.
    unsafe { libc::close(wr) };
    // SAFETY: `rd` is ours and open; the File owns it from here.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(rd) };
    let start = Instant::now();
    let mut out = Vec::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        let mut p = libc::pollfd {
            fd: rd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis() as i32) };
        if n == 0 {
            timed_out = true;
            break;
        }
        let mut buf = [0u8; 4096];
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if timed_out {
        // SAFETY: `pid` is our child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let line = String::from_utf8_lossy(&out).trim().to_string();
    if timed_out {
        return Err(Finding::new(
            "hang",
            format!("no result within {} s", deadline.as_secs()),
        ));
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        return Err(Finding::new(
            format!("signal {sig}"),
            format!("killed by signal {sig}: {line}"),
        ));
    }
    match libc::WEXITSTATUS(status) {
        0 => line
            .strip_prefix("ok ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| Finding::new("no result", line.clone())),
        alloc::OVER_CAP => Err(Finding::new("over the allocation cap", line)),
        _ => {
            let kind = line.split(": ").next().unwrap_or("panic").to_string();
            Err(Finding::new(kind, line))
        }
    }
}

fn input_bytes(kind: Kind, input: &Path) -> u64 {
    match kind {
        Kind::Core => std::fs::metadata(input).map_or(0, |m| m.len()),
        Kind::Recording => walk(input)
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum(),
    }
}

/// Every regular file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

fn write_fd(fd: i32, s: &str) {
    // SAFETY: writing an initialised buffer to our pipe.
    unsafe { libc::write(fd, s.as_ptr().cast(), s.len()) };
}

fn child(kind: Kind, input: &Path, symbolize: bool, bytes: u64, fd: i32) -> ! {
    // A backstop under the allocation cap: mappings of the address space
    // (the input's own included) beyond this fail.
    let vm = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096;
    let limit = vm + bytes + (2 << 30);
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: a valid rlimit for our own process.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) };
    std::panic::set_hook(Box::new(move |info| {
        let at = info
            .location()
            .map_or(String::new(), |l| format!("{}:{}", l.file(), l.line()));
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        write_fd(
            fd,
            &format!("panic at {at}: {}\n", msg.lines().next().unwrap_or("")),
        );
    }));
    let base = alloc::live();
    // Recordings symbolize whatever we ask.
    alloc::cap(cap_for(bytes, symbolize || kind == Kind::Recording), fd);
    let result = std::panic::catch_unwind(|| match kind {
        Kind::Core => analyse_core(input, symbolize),
        Kind::Recording => analyse_recording(input),
    });
    let code = match result {
        Ok(()) => {
            write_fd(fd, &format!("ok {}\n", alloc::peak_since(base)));
            0
        }
        Err(_) => 3,
    };
    // SAFETY: ending the child without running the parent's atexit
    // handlers or destructors.
    unsafe { libc::_exit(code) }
}

/// Addresses worth asking about: a live block, its middle, a thread's
/// stack pointer, and the edges of the address space.
fn addresses(heap: &Heap<'_>, snap: &Snapshot) -> Vec<u64> {
    let mut v = vec![0, 8, u64::MAX - 7, u64::MAX];
    if let Some(b) = heap.audit.live.first() {
        v.push(b.addr);
        v.push(b.addr.saturating_add(b.size / 2));
    }
    if let Some(b) = heap.audit.live.last() {
        v.push(b.addr);
    }
    if let Some(t) = snap.threads().first() {
        v.push(t.sp());
    }
    v
}

/// Every accessor of the snapshot, then every analysis over it, each
/// rendered as the binary would.
pub fn analyse_core(path: &Path, symbolize: bool) {
    let Ok(snap) = Snapshot::open(path) else {
        return;
    };
    let _ = (
        snap.file_bytes(),
        snap.segments(),
        snap.process(),
        snap.files(),
    );
    let _ = (
        snap.auxv(),
        snap.metadata(),
        snap.metadata_error(),
        snap.pid(),
    );
    for t in snap.threads() {
        let _ = (t.pc(), t.sp(), t.fp());
    }
    let _ = (snap.mappings(), snap.captured_bytes());
    for m in snap.modules() {
        let _ = snap.build_id_at(m.base);
    }
    for h in snap.audit_headers() {
        let _ = snap.segment_of(h);
        let _ = audit::decode(&snap, h);
        let _ = audit::locate(&snap, h);
    }
    let s = summary::of(&snap);
    let _ = json::to_string(&json::InfoDocument::from(&s));
    let _ = audit::find(&snap, snap.pid().map(|p| p as u32));
    let _ = maps_diff::snapshot_mappings(&snap).map(|m| maps_diff::diff(&m, &m));
    // The dump symbolizes every stack.
    if let Some(d) = symbolize
        .then(|| audit_dump::from_snapshot(&snap).ok())
        .flatten()
    {
        let _ = owner::split_snapshot(&snap, &d);
    }
    let Ok(heap) = Heap::open(&snap) else {
        return;
    };
    let sym = if symbolize {
        Symbolizer::for_snapshot(&snap)
    } else {
        Symbolizer::new(Vec::new())
    };
    let c = caches::compare(&[&heap.audit]);
    let _ = render::caches::text(&c, &["x".into()], usize::MAX);
    let _ = json::to_string(&json::CachesDocument::from(&c));
    for group in [false, true] {
        let b = bufs::select(&heap.audit, &Default::default(), &sym, group, !group);
        let _ = render::bufs::text(&b, true, usize::MAX);
        let _ = json::to_string(&json::BufsDocument::from(&b));
    }
    let addrs = addresses(&heap, &snap);
    for &a in &addrs {
        if let Ok(w) = whatis::whatis(&heap, &sym, a) {
            let _ = render::whatis::text(&w);
            let _ = json::to_string(&json::WhatisDocument::from(&w));
        }
    }
    if heap.require_memory().is_err() {
        return;
    }
    for &a in &addrs {
        if let Ok(w) = dump::dump(&heap, &sym, a, 256) {
            let _ = render::dump::text(&w);
        }
    }
    let mut opts = leaks::LeaksOptions::default();
    opts.threads = 2;
    opts.symbolize_reachable = true;
    let l = leaks::find(&heap, &opts, &sym);
    let _ = render::leaks::text(&l, &Default::default());
    let _ = json::to_string(&json::LeaksDocument::from(&l));
    for &a in addrs.iter().skip(4).take(2) {
        let r = refs::find(&heap, &sym, a, Matcher::Exact, 2);
        let _ = render::refs::text(&r);
        let _ = json::to_string(&json::RefsDocument::from(&r));
        if let Ok(c) = refs::chain(&heap, &sym, a, Matcher::Range(64), 4) {
            let _ = render::refs::chains(&c, true);
        }
    }
}

/// The recording reader and every analysis of a recording.
pub fn analyse_recording(dir: &Path) {
    if let Ok(rec) = Recording::open(dir) {
        let t = trend::analyse(&rec);
        let _ = leaktrail_report::text::trend(&t);
        let _ = leaktrail_report::svg::trend_chart(&rec.samples, &t, &Default::default());
        for s in &rec.samples {
            if let Ok(d) = rec.detail(s.i) {
                let _ = maps_diff::diff(&d.mappings, &d.mappings);
            }
        }
        let _ = owner::trend_of_recording(dir);
    }
    if let Ok(g) = growth::open(&[dir.to_path_buf()]) {
        let _ = leaktrail_report::growth::text(&g, 20, 8);
        let _ = json::to_string(&json::GrowthDocument::from(&g));
    }
    if let Ok(inv) = investigation::open(dir) {
        let _ = html::page(&inv, &Default::default());
    }
}

/// `leaktrail ARGS` under a 2 GiB address-space limit and a deadline:
/// exit 0 (or 3, leaks found) or 2 with one line, no panic.
pub fn binary(args: &[std::ffi::OsString], kind: Kind) -> Result<(), Finding> {
    let deadline = deadline(kind);
    let out = Command::new("timeout")
        .args(["-s", "KILL"])
        .arg(deadline.as_secs().to_string())
        .args(["prlimit", "--as=2147483648", "--"])
        .arg(env!("CARGO_BIN_EXE_leaktrail"))
        .args(args)
        .output()
        .expect("run timeout prlimit leaktrail");
    let err = String::from_utf8_lossy(&out.stderr);
    let cmd = args
        .first()
        .map_or(String::new(), |c| c.to_string_lossy().into_owned());
    if err.contains("panicked") || err.contains("memory allocation") {
        let first = err
            .lines()
            .find(|l| l.contains("panicked") || l.contains("memory"))
            .unwrap_or("");
        return Err(Finding::new(
            format!("{cmd}: panic"),
            format!("{cmd}: {first}"),
        ));
    }
    match out.status.code() {
        Some(0) | Some(3) => Ok(()),
        Some(2) if err.lines().count() == 1 => Ok(()),
        Some(2) => Err(Finding::new(
            format!("{cmd}: not one line"),
            format!("{cmd}: {} lines: {err}", err.lines().count()),
        )),
        code => Err(Finding::new(
            format!("{cmd}: exit {code:?}"),
            format!(
                "{cmd}: {}: {}",
                out.status,
                err.lines().next().unwrap_or("")
            ),
        )),
    }
}
