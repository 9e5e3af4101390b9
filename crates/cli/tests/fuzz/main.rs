//! The fuzz harness: every file is hostile (issue 16, item 3).
//!
//! A deterministic, seeded mutation fuzzer on stable Rust. Seeds are real:
//! snapshots of a fixture under the tracer (`--memory full`, `tables`,
//! `none`), gdb's `gcore` of a traced process, the recording `run` wrote
//! around them and the `watch` recording checked in under
//! `fixtures/recordings/`. Each input is a seed file with a few [`Op`]s
//! applied (see `mutate`): bit flips, boundary words over the fields that
//! matter (program headers, note headers, our note's JSON, the audit
//! header's shard descriptors, table entries, stack records, `meta.json`
//! and `samples.jsonl` fields), truncation, deleted, duplicated and
//! spliced ranges. It goes to every reader and analysis in a forked child
//! under an allocation cap (`target`), and now and then to one command of
//! the binary under `prlimit --as`.
//!
//! A failing input is minimised (ops dropped, ranges halved, while the same
//! kind of failure remains) and saved as `{seed, file, ops}` JSON: the
//! corpus under `fixtures/corrupt/`, replayed by
//! `the_corpus_replays_without_a_failure` against freshly made seeds, so
//! the repository holds a few hundred bytes per finding, not a core.
//!
//! `LEAKTRAIL_FUZZ_SECONDS` (default 30) bounds the CI run and
//! `LEAKTRAIL_FUZZ_SEED` picks its seed (printed either way);
//! `bench/fuzz/run` runs it longer.

mod alloc;
#[path = "../it/core_edit.rs"]
#[allow(dead_code)]
mod core_edit;
mod corpus;
mod mutate;
mod seeds;
#[path = "../it/support.rs"]
#[allow(dead_code)]
mod support;
mod target;

use std::path::Path;
use std::time::{Duration, Instant};

use corpus::Entry;
use mutate::{Op, Rng};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// One test at a time in this binary: a fork while another test thread
/// holds a lock would leave the child stuck on it.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn the_corpus_replays_without_a_failure() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let seeds = seeds::get();
    let dir = support::scratch("fuzz_corpus");
    // LEAKTRAIL_FUZZ_CORPUS replays another directory (a fuzz run's
    // findings) instead.
    let from = std::env::var_os("LEAKTRAIL_FUZZ_CORPUS")
        .map_or_else(|| support::repo_root().join("fixtures/corrupt"), Into::into);
    let entries = corpus::load(&from);
    assert!(!entries.is_empty(), "the corpus is empty");
    let mut failures = Vec::new();
    for (i, (name, e)) in entries.iter().enumerate() {
        let Some(input) = seeds.make(e, &dir) else {
            failures.push(format!("{name}: no seed {} with {}", e.seed, e.file));
            continue;
        };
        // Symbolized where the ops can reach what the symbolizer reads
        // (the paths of NT_FILE and of our note); it costs seconds each.
        let symbolize = e
            .ops
            .iter()
            .any(|o| matches!(o, Op::Path { .. } | Op::Json { .. }));
        let t = Instant::now();
        if let Err(f) = target::in_process(input.kind, &input.path, symbolize) {
            failures.push(format!("{name}: {}", f.line));
        }
        eprintln!("corpus: {name}: in process {} ms", t.elapsed().as_millis());
        // Through the binary: the first command (`info`, `trend`) and one
        // more, a different one for each entry, so the corpus covers them
        // all without running every analysis of a debug build on each.
        let commands = seeds.commands(&input);
        let other = 1 + i % (commands.len() - 1);
        for args in [&commands[0], &commands[other]] {
            let t = Instant::now();
            if let Err(f) = target::binary(args, input.kind) {
                failures.push(format!("{name}: {}", f.line));
            }
            eprintln!(
                "corpus: {name}: {:?} {} ms",
                args[0],
                t.elapsed().as_millis()
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus inputs fail:\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
}

#[test]
fn fuzz_for_a_bounded_time() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let seed = env_u64("LEAKTRAIL_FUZZ_SEED").unwrap_or(16);
    let seconds = env_u64("LEAKTRAIL_FUZZ_SECONDS").unwrap_or(30);
    let max_runs = env_u64("LEAKTRAIL_FUZZ_RUNS").unwrap_or(u64::MAX);
    eprintln!("fuzz: seed {seed}, {seconds} s (LEAKTRAIL_FUZZ_SEED, LEAKTRAIL_FUZZ_SECONDS)");
    let seeds = seeds::get();
    let dir = support::scratch("fuzz_run");
    let save = std::env::var_os("LEAKTRAIL_FUZZ_SAVE").map(std::path::PathBuf::from);

    // Valid seeds must pass, and show how far below the cap they stay (a
    // recording once, whichever of its files is the target).
    let mut seen = Vec::new();
    for e in seeds.targets() {
        let key = (
            e.seed.clone(),
            e.recording.then(String::new).unwrap_or(e.file.clone()),
        );
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let input = seeds.make(&e, &dir).expect("a seed input");
        let t = Instant::now();
        // Symbolized once: the debug info is the same for every seed.
        let symbolize = e.seed == "roots" && !e.recording;
        let peak = target::in_process(input.kind, &input.path, symbolize)
            .unwrap_or_else(|f| panic!("the seed {} {} fails: {}", e.seed, e.file, f.line));
        eprintln!(
            "fuzz: seed {} {}: {:.1} MiB peak of {:.1} allowed, {} ms",
            e.seed,
            e.file,
            peak as f64 / 1048576.0,
            target::cap_for(input.bytes, symbolize || e.recording) as f64 / 1048576.0,
            t.elapsed().as_millis()
        );
    }

    let targets = seeds.weighted();
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let mut runs = 0u64;
    let mut findings: Vec<(Entry, target::Finding)> = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) && runs < max_runs {
        runs += 1;
        if runs % 200 == 0 {
            eprintln!("fuzz: {runs} runs, {:.0} s", start.elapsed().as_secs_f64());
        }
        let base = rng.pick(&targets).clone();
        let anchors = seeds.anchors(&base);
        let seed_bytes = seeds.bytes(&base);
        let n = 1 + rng.below(3) as usize;
        let ops = (0..n)
            .map(|_| anchors.random_op(&mut rng, seed_bytes))
            .collect();
        let entry = Entry { ops, ..base };
        // Now and then the symbolizer, and one command of the binary.
        let symbolize = rng.chance(8);
        let command = rng.chance(16).then(|| rng.below(16) as usize);
        let Some(f) = check(seeds, &entry, &dir, symbolize, command) else {
            continue;
        };
        if findings.iter().any(|(_, g)| g.kind == f.kind) {
            continue;
        }
        eprintln!("fuzz: run {runs}: {}", f.line);
        let small = corpus::minimise(entry, &f, |e| {
            check(seeds, e, &dir, symbolize, command).filter(|g| g.kind == f.kind)
        });
        eprintln!(
            "fuzz: minimised to {}",
            serde_json::to_string(&small).unwrap_or_default()
        );
        if let Some(to) = &save {
            corpus::save(to, &small, &f);
        }
        findings.push((small, f));
    }
    eprintln!(
        "fuzz: {runs} runs in {:.0} s, {} findings (seed {seed})",
        start.elapsed().as_secs_f64(),
        findings.len()
    );
    assert!(
        findings.is_empty(),
        "fuzz seed {seed}: {} findings (LEAKTRAIL_FUZZ_SAVE=fixtures/corrupt keeps them):\n{}",
        findings.len(),
        findings
            .iter()
            .map(|(e, f)| format!(
                "{}\n  {}",
                f.line,
                serde_json::to_string(e).unwrap_or_default()
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Makes the input of `entry` and runs it: in process, and through the
/// binary's command number `command` (modulo how many there are).
fn check(
    seeds: &seeds::Seeds,
    entry: &Entry,
    dir: &Path,
    symbolize: bool,
    command: Option<usize>,
) -> Option<target::Finding> {
    let input = seeds.make(entry, dir)?;
    if let Err(f) = target::in_process(input.kind, &input.path, symbolize) {
        return Some(f);
    }
    let commands = seeds.commands(&input);
    let args = &commands[command? % commands.len()];
    target::binary(args, input.kind).err()
}
