//! Across snapshots (issue 6): growth ranking, flame graphs and diffs,
//! pprof export, the parallel job runner, the HTML report and the demo.
//!
//! Most tests record `fixtures/growth_sites.c` under `leaktrail run` and
//! take one snapshot after each of its steps (`snapshot --recording`,
//! synchronised through its stdin and stdout): a 4 KiB cache growing by
//! 100 buffers a step, a flat pool of 2,000 buffers of 1,000 bytes, and a
//! one-off burst of 500 buffers of 8,000 bytes at step 3.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde_json::Value;

use crate::support::{
    allocated_in, assert_bad_input, entry, fixture, functions, leaktrail, record_in_steps,
    repo_root, scratch, stdout, success,
};

pub const NO_FP: &[&str] = &["-fomit-frame-pointer", "-fno-optimize-sibling-calls"];

/// Bytes each step of the fixture adds to its cache.
pub const GROW_STEP_BYTES: u64 = 100 * 4096;
/// The pool's bytes (constant).
pub const POOL_BYTES: u64 = 2000 * 1000;
/// The burst's bytes (from step 3 on).
pub const BURST_BYTES: u64 = 500 * 8000;
/// Steps of the shared recordings. With eight, the ranking holds however
/// the snapshots happen to be spaced in time (a loaded machine can stall
/// any step): the growth then has 7 × 400 KiB of steady rise, and the
/// 3.8 MiB burst, one step of eight, cannot outscore it (see
/// `analysis::growth`).
pub const STEPS: usize = 8;

/// Records `growth_sites` for `steps` steps into `<scratch name>/rec`,
/// with a snapshot after each step (`0001.core` ..) and the one at exit.
pub fn record_steps(name: &str, steps: usize, memory: &str) -> PathBuf {
    let exe = fixture("growth_sites", NO_FP);
    let dir = scratch(name).join("rec");
    let steps_arg = steps.to_string();
    record_in_steps(&dir, memory, &[exe.as_os_str(), steps_arg.as_ref()], steps);
    dir
}

/// One recording of five steps shared by the tests that only read it.
pub fn shared_recording() -> PathBuf {
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut dir = DIR.lock().unwrap_or_else(|p| p.into_inner());
    dir.get_or_insert_with(|| record_steps("growth_shared", STEPS, "tables"))
        .clone()
}

/// The snapshot taken after step `k` of a recording.
pub fn step_snapshot(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("snapshots/{k:04}.core"))
}

#[test]
fn growth_ranks_steady_growth_above_a_flat_pool_and_a_burst() {
    let dir = shared_recording();
    let json: Value =
        serde_json::from_str(&stdout(leaktrail().args(["growth", "--json"]).arg(&dir)))
            .expect("json");
    let suspects = json["suspects"].as_array().expect("suspects");
    let leaf = |s: &Value| functions(&s["stack"]).first().cloned().unwrap_or_default();
    let first = &suspects[0];
    assert_eq!(leaf(first), "grow_cache", "{suspects:#?}");
    assert_eq!(first["class"], 4096);
    assert_eq!(first["rank"], 1);
    assert_eq!(
        functions(&first["stack"])[..3],
        ["grow_cache", "run_step", "main"]
    );
    // The series: 100 more buffers after each step. A recording's exit
    // snapshot answers leaks, not growth: it is not in the series.
    let series = first["series"].as_array().expect("series");
    assert_eq!(series.len(), STEPS);
    for (k, p) in series.iter().enumerate() {
        let step = (k + 1) as u64;
        assert_eq!(p["count"], 100 * step);
        assert_eq!(p["bytes"], GROW_STEP_BYTES * step);
    }
    assert!(first["slope"].as_f64().expect("slope") > 0.0);
    let score = first["score"].as_f64().expect("score");
    // The burst (4 MB, more than all the growth) is listed, but below; the
    // flat pool does not grow at all.
    let burst = suspects
        .iter()
        .find(|s| leaf(s) == "burst")
        .expect("the burst is a suspect");
    assert!(burst["rank"].as_u64() > first["rank"].as_u64());
    assert!(burst["score"].as_f64().expect("score") < score);
    assert_eq!(burst["series"][STEPS - 1]["bytes"], BURST_BYTES);
    for s in suspects {
        let l = leaf(s);
        assert!(
            l != "fill_pool" && l != "churn_pool",
            "the flat pool is not growing: {s:#}"
        );
    }
    // The 4 KiB class leads the classes too; the 1 KiB one is flat.
    assert_eq!(json["classes"][0]["class"], 4096);
    let pool = entry(&json, "classes", "class", 1024);
    for p in pool["series"].as_array().expect("series") {
        assert_eq!(p["bytes"], POOL_BYTES);
    }
    assert_eq!(pool["stats"]["score"], 0.0);
    assert_eq!(
        json["snapshots"].as_array().expect("snapshots").len(),
        STEPS
    );
}

#[test]
fn growth_text_names_the_class_series_and_stack() {
    let dir = shared_recording();
    let text = stdout(leaktrail().arg("growth").arg(&dir));
    assert!(
        text.contains("#1 4096 B: 100 → 800 buffers, +2.7 MiB, +"),
        "{text}"
    );
    let first = text.split("\n#2").next().expect("first suspect");
    assert!(first.contains("grow_cache"), "{text}");
    assert!(first.contains("run_step"), "{text}");
}

#[test]
fn growth_needs_two_snapshots() {
    let dir = shared_recording();
    assert_bad_input(
        leaktrail().arg("growth").arg(step_snapshot(&dir, 1)),
        &["at least two"],
    );
    assert_bad_input(
        leaktrail().args(["growth", "/nonexistent/x.core", "/nonexistent/y.core"]),
        &[],
    );
}

/// Folded lines from `main` inward (what is outside `main` depends on the
/// C library), in the order given.
fn from_main(folded: &str) -> String {
    folded
        .lines()
        .map(|l| match l.find(";main;") {
            Some(i) => &l[i + 1..],
            None => l,
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn golden(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("fixtures/golden").join(name)).expect("golden file")
}

/// Sum of the last column of folded lines (the one before it with `col` 2).
fn folded_total(folded: &str, from_end: usize) -> u64 {
    folded
        .lines()
        .map(|l| {
            l.rsplit(' ')
                .nth(from_end)
                .and_then(|n| n.parse::<u64>().ok())
                .expect("count")
        })
        .sum()
}

fn live_bytes(snap: &Path) -> u64 {
    let json: Value =
        serde_json::from_str(&stdout(leaktrail().args(["caches", "--json"]).arg(snap)))
            .expect("json");
    json["totals"][0]["live_bytes"]
        .as_u64()
        .expect("live bytes")
}

#[test]
fn flamegraph_folded_matches_the_known_stacks_and_bytes() {
    let dir = shared_recording();
    let snap = step_snapshot(&dir, 5);
    let folded = stdout(leaktrail().args(["flamegraph", "--folded"]).arg(&snap));
    assert_eq!(from_main(&folded), golden("growth_sites-step5.folded"));
    assert_eq!(
        folded_total(&folded, 0),
        5 * GROW_STEP_BYTES + POOL_BYTES + BURST_BYTES
    );
    assert_eq!(folded_total(&folded, 0), live_bytes(&snap));
}

#[test]
fn flamegraph_diff_totals_are_the_difference_of_the_snapshots() {
    let dir = shared_recording();
    let (base, snap) = (step_snapshot(&dir, 1), step_snapshot(&dir, 5));
    let diff = stdout(
        leaktrail()
            .args(["flamegraph", "--folded", "--diff"])
            .arg(&base)
            .arg(&snap),
    );
    assert_eq!(
        from_main(&diff),
        golden("growth_sites-step1-to-5.diff.folded")
    );
    let (before, after) = (folded_total(&diff, 1), folded_total(&diff, 0));
    assert_eq!(before, live_bytes(&base));
    assert_eq!(after, live_bytes(&snap));
    assert_eq!(after - before, 4 * GROW_STEP_BYTES + BURST_BYTES);
    // The SVG: inferno's, with the growth in red.
    let svg_path = scratch("flamegraph_diff").join("diff.svg");
    stdout(
        leaktrail()
            .args(["flamegraph", "--diff"])
            .arg(&base)
            .arg(&snap)
            .arg("-o")
            .arg(&svg_path),
    );
    let svg = std::fs::read_to_string(&svg_path).expect("svg");
    assert!(svg.contains("<svg") && svg.contains("grow_cache"));
    assert!(svg.contains("rgb(255,"), "growth is drawn in red");
}

#[test]
fn flamegraph_filters_like_bufs() {
    let dir = shared_recording();
    let snap = step_snapshot(&dir, 5);
    let folded = |args: &[&str]| {
        from_main(&stdout(
            leaktrail()
                .args(["flamegraph", "--folded"])
                .args(args)
                .arg(&snap),
        ))
    };
    assert_eq!(
        folded(&["--size", "2049..4096"]),
        "main;run_step;grow_cache 2048000\n"
    );
    assert_eq!(
        folded(&["--class", "8192"]),
        "main;run_step;burst 4000000\n"
    );
    assert_eq!(folded(&["--thread", "1"]), "");
    assert_eq!(
        folded(&["--stack-contains", "churn"]),
        "main;run_step;churn_pool 100000\n"
    );
    // Ages are relative to the newest buffer: the churn of the last step is
    // the newest, the pool's first fill among the oldest.
    assert!(folded(&["--newer-than", "1h"]).contains("main;fill_pool 1900000\n"));
    assert_bad_input(
        leaktrail()
            .args(["flamegraph", "--size", "lots"])
            .arg(&snap),
        &[],
    );
}

#[test]
fn pprof_decodes_independently_with_the_totals_of_caches() {
    let dir = shared_recording();
    let snap = step_snapshot(&dir, 5);
    let out = scratch("pprof").join("heap.pb.gz");
    stdout(leaktrail().arg("pprof").arg(&snap).arg("-o").arg(&out));
    // python3: the CI script installs it.
    let p: Value = serde_json::from_str(&stdout(
        Command::new("python3")
            .arg(repo_root().join("crates/cli/tests/it/pprof_decode.py"))
            .arg(&out),
    ))
    .expect("decoder json");
    assert_eq!(
        p["sample_types"],
        serde_json::json!([
            ["inuse_objects", "count"],
            ["inuse_space", "bytes"],
            ["alloc_objects", "count"],
            ["alloc_space", "bytes"]
        ])
    );
    assert_eq!(p["default_sample_type"], "inuse_space");
    let caches: Value =
        serde_json::from_str(&stdout(leaktrail().args(["caches", "--json"]).arg(&snap)))
            .expect("caches json");
    assert_eq!(p["totals"][0], caches["totals"][0]["live_count"]);
    assert_eq!(p["totals"][1], caches["totals"][0]["live_bytes"]);
    assert_eq!(
        p["totals"][1],
        5 * GROW_STEP_BYTES + POOL_BYTES + BURST_BYTES
    );
    // Functions with files and lines, and the stack of the growth site.
    let grow = allocated_in(&p, "samples", "grow_cache")
        .next()
        .expect("grow_cache sample");
    assert_eq!(
        grow["values"],
        serde_json::json!([500, 5 * GROW_STEP_BYTES, 0, 0])
    );
    assert_eq!(grow["labels"]["size_class"], 4096);
    assert_eq!(grow["stack"][1]["function"], "run_step");
    assert!(grow["stack"][0]["file"]
        .as_str()
        .expect("file")
        .ends_with("growth_sites.c"));
    assert!(grow["stack"][0]["line"].as_i64().expect("line") > 0);
    // Mappings with build ids: the fixture's own among them.
    let exe = p["mappings"]
        .as_array()
        .expect("mappings")
        .iter()
        .find(|m| {
            m["filename"]
                .as_str()
                .is_some_and(|f| f.contains("growth_sites"))
        })
        .expect("the fixture's mapping");
    assert_eq!(exe["build_id"].as_str().expect("build id").len(), 40);
}

#[test]
fn job_runs_sixteen_snapshots_in_parallel_and_reports_a_corrupt_one() {
    // 15 steps and the exit: 16 snapshots.
    let dir = record_steps("job", 15, "tables");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir.join("snapshots"))
        .expect("snapshots")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "core"))
        .collect();
    inputs.sort();
    assert_eq!(inputs.len(), 16);
    // A truncated copy of a good core, among them.
    let corrupt = dir.join("corrupt.core");
    let bytes = std::fs::read(&inputs[3]).expect("read core");
    std::fs::write(&corrupt, &bytes[..bytes.len() / 3]).expect("write corrupt");
    inputs.insert(8, corrupt.clone());

    let run = |jobs: &str, out: &Path| {
        let start = std::time::Instant::now();
        let o = leaktrail()
            .args(["job", "-j", jobs, "-o"])
            .arg(out)
            .args(["flamegraph", "--size", "2049..4096", "--"])
            .args(&inputs)
            .output()
            .expect("job");
        (o, start.elapsed())
    };
    let out2 = dir.join("out-j2");
    let (o, t2) = run("2", &out2);
    assert_eq!(o.status.code(), Some(1), "one input failed");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("17 inputs, 16 ok, 1 failed"), "summary: {err}");
    assert!(
        err.contains(&format!("failed: {}", corrupt.display())),
        "{err}"
    );
    let mut outputs: Vec<String> = std::fs::read_dir(&out2)
        .expect("outputs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    outputs.sort();
    assert_eq!(outputs.len(), 16, "{outputs:?}");
    assert_eq!(outputs[0], "0001.svg");
    assert_eq!(outputs[15], "0016-exit.svg");
    for name in &outputs {
        let svg = std::fs::read_to_string(out2.join(name)).expect("svg");
        assert!(svg.contains("grow_cache"), "{name}");
    }
    let (o, t1) = run("1", &dir.join("out-j1"));
    assert_eq!(o.status.code(), Some(1));
    eprintln!(
        "job over 17 inputs: -j 1 {:.2}s, -j 2 {:.2}s, speed-up {:.2}x",
        t1.as_secs_f64(),
        t2.as_secs_f64(),
        t1.as_secs_f64() / t2.as_secs_f64()
    );
}

#[test]
fn job_refuses_what_is_not_a_per_snapshot_command() {
    assert_bad_input(leaktrail().args(["job", "watch", "--", "x.core"]), &[]);
    assert_bad_input(leaktrail().args(["job", "flamegraph", "x.core"]), &[]);
}

/// The headless browser the report test uses (Debian's `chromium`; the CI
/// script installs it). The test installs nothing.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
        {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !path.is_empty() {
                return PathBuf::from(path);
            }
        }
    }
    panic!("the HTML report test needs headless Chromium: apt-get install chromium (.ci/run does)");
}

/// Runs headless Chromium on `page` with `mode` (`--dump-dom` or
/// `--screenshot=FILE`); returns (stdout, stderr).
fn headless(page: &Path, mode: &str, scratch_dir: &Path) -> (String, String) {
    headless_at(page, "", mode, scratch_dir)
}

/// [`headless`] on `page` opened at the URL hash `hash` (e.g. the
/// report's `#explore:` steps).
fn headless_at(page: &Path, hash: &str, mode: &str, scratch_dir: &Path) -> (String, String) {
    let profile = scratch_dir.join(format!("chromium-profile-{}", mode.len()));
    let out = success(
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,2400",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(mode)
            .arg(format!("file://{}{hash}", page.display()))
            .stdin(Stdio::null()),
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (width, height, distinct byte values of the decompressed image data)
/// of a PNG file.
fn png_summary(path: &Path) -> (u32, u32, usize) {
    use std::io::Read;
    let data = std::fs::read(path).expect("png");
    assert_eq!(&data[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut i, mut idat, mut size) = (8, Vec::new(), (0, 0));
    while i + 8 <= data.len() {
        let len = u32::from_be_bytes(data[i..i + 4].try_into().expect("len")) as usize;
        let kind = &data[i + 4..i + 8];
        let body = &data[i + 8..i + 8 + len];
        if kind == b"IHDR" {
            size = (
                u32::from_be_bytes(body[0..4].try_into().expect("w")),
                u32::from_be_bytes(body[4..8].try_into().expect("h")),
            );
        } else if kind == b"IDAT" {
            idat.extend_from_slice(body);
        }
        i += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .expect("inflate");
    let mut seen = [false; 256];
    for b in raw {
        seen[b as usize] = true;
    }
    (size.0, size.1, seen.iter().filter(|s| **s).count())
}

#[test]
fn report_is_one_offline_page_that_renders_cleanly_in_chromium() {
    let dir = record_steps("report", STEPS, "full");
    let scratch_dir = dir.parent().expect("scratch").to_path_buf();
    let page = scratch_dir.join("report.html");
    stdout(leaktrail().arg("report").arg(&dir).arg("-o").arg(&page));
    let html = std::fs::read_to_string(&page).expect("report.html");
    // Self-contained: nothing to fetch.
    for needle in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "url(http",
        "@import",
        "<link",
        "<iframe",
        "<img src=\"http",
    ] {
        assert!(!html.contains(needle), "the page refers outside: {needle}");
    }
    // The story, in order.
    let at = |id: &str| {
        html.find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("section {id}"))
    };
    assert!(at("diagnosis") < at("trend"));
    assert!(at("trend") < at("classes"));
    assert!(at("classes") < at("suspects"));
    assert!(at("suspects") < at("flamegraphs"));
    assert!(at("flamegraphs") < at("leaks"));
    assert!(at("leaks") < at("captured"));

    // Rendered by a browser: the DOM after scripts ran.
    let (dom, stderr) = headless(&page, "--dump-dom", &scratch_dir);
    assert!(
        dom.contains("data-rendered=\"yes\""),
        "the page's script ran"
    );
    assert!(
        dom.contains("data-errors=\"0\""),
        "console errors: {}",
        dom.split("id=\"errors\"").nth(1).unwrap_or("")
    );
    assert!(
        !stderr.contains("Uncaught"),
        "uncaught script errors: {stderr}"
    );
    // Charts and flame graphs are in the DOM.
    assert!(dom.contains("<svg class=\"trend\""), "trend chart");
    assert!(
        dom.contains("class=\"chart classes-chart\""),
        "classes chart"
    );
    assert!(dom.matches("class=\"spark\"").count() >= 2, "sparklines");
    for id in ["flame-latest", "flame-diff"] {
        let start = dom.find(&format!("id=\"{id}\"")).expect(id);
        let graph = &dom[start..];
        let graph = &graph[..graph.find("</svg></svg>").expect("end of graph")];
        assert!(graph.contains("<svg class=\"flamegraph\""), "{id}");
        assert!(graph.matches("<g>").count() >= 8, "{id}: frames");
        assert!(
            graph.contains("<title>grow_cache ("),
            "{id}: the growth site"
        );
    }
    // Everything the fixture keeps is referenced from its globals.
    assert!(
        dom.contains("Findleaks found nothing definitely lost"),
        "findleaks summary"
    );
    assert!(dom.contains("still reachable"));
    let suspects = &dom[dom.find("id=\"suspects\"").expect("suspects")..];
    let first = &suspects[..suspects.find("</pre>").expect("first stack")];
    assert!(
        first.contains("4096 B") && first.contains("grow_cache"),
        "{first}"
    );

    // And it draws: a real screenshot, not a blank page.
    let png = scratch_dir.join("report.png");
    headless(
        &page,
        &format!("--screenshot={}", png.display()),
        &scratch_dir,
    );
    let (w, h, distinct) = png_summary(&png);
    assert_eq!((w, h), (1280, 2400));
    assert!(
        std::fs::metadata(&png).expect("png").len() > 30_000,
        "a screenshot of charts is not tiny"
    );
    assert!(
        distinct > 64,
        "the screenshot is nearly uniform ({distinct} values)"
    );
}

#[test]
fn demo_tells_the_whole_story() {
    let (dir, stdout) = crate::support::demo();
    // The watch: growing, in the heap.
    assert!(stdout.contains("verdict:  growing"), "{stdout}");
    // The diagnosis: the growing class, the function that keeps its
    // buffers (reachable: findleaks cannot see it), the true leak.
    let diagnosis = stdout
        .split("Diagnosis")
        .nth(1)
        .unwrap_or_else(|| panic!("no diagnosis: {stdout}"));
    assert!(
        diagnosis.contains("growing class:     4096 B:"),
        "{diagnosis}"
    );
    assert!(
        diagnosis.contains("leaking function:  cache_response (demo_leaky.c:"),
        "{diagnosis}"
    );
    assert!(diagnosis.contains("still referenced"), "{diagnosis}");
    assert!(
        diagnosis.contains("truly leaked:      parse_headers (demo_leaky.c:"),
        "{diagnosis}"
    );
    let report = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(report.contains("cache_response") && report.contains("parse_headers"));
    assert!(report.contains("id=\"flame-diff\""));
}

#[test]
fn report_of_a_watch_without_snapshots_still_tells_the_trend() {
    // fixtures/recordings/README.md: written by `watch`, no snapshots.
    let dir = repo_root().join("fixtures/recordings/watch-malloc-leak-v1");
    let page = scratch("report_watch").join("report.html");
    stdout(leaktrail().arg("report").arg(&dir).arg("-o").arg(&page));
    let html = std::fs::read_to_string(&page).expect("report.html");
    assert!(html.contains("<span class=\"verdict growing\">growing</span>"));
    assert!(html.contains("<svg class=\"trend\""));
    assert!(html.contains("no snapshots: record with `leaktrail run`"));
    assert!(!html.contains("class=\"flamegraph\""));
}

/// The text of the element with id `id` in a dumped DOM (tags dropped).
fn element_text(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let open = start + dom[start..].find('>').expect("tag end") + 1;
    let tag = dom[..start].rfind('<').expect("tag start");
    let name: String = dom[tag + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let close = open + dom[open..].find(&format!("</{name}>")).expect("close");
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[open..close].chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push('|');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The rows of the sites table, each as its cells' text.
fn site_rows(dom: &str) -> Vec<Vec<String>> {
    let body = element_text(dom, "sites-table");
    body.split("||||")
        .map(|row| {
            row.split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|r: &Vec<String>| r.iter().any(|c| c.contains(" (growth_sites.c:")))
        .collect()
}

/// The names of the frames drawn in the explorer's flame graph.
fn flame_frames(dom: &str) -> Vec<(String, u64, bool)> {
    let start = dom.find("id=\"flame-live\"").expect("flame-live");
    let graph = &dom[start..];
    let graph = &graph[..graph.find("<h3>").expect("after the graph")];
    graph
        .split("<div class=\"fr")
        .skip(1)
        .map(|d| {
            let attr = |name: &str| {
                let at = d.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
                d[at..at + d[at..].find('"').expect("quote")].to_string()
            };
            (
                attr("data-name"),
                attr("data-bytes").parse().expect("bytes"),
                d.starts_with(" match"),
            )
        })
        .collect()
}

/// Issue 17 (item 5): the report is an explorer. Headless Chromium opens
/// it at URL hashes that drive its own controls (the slider, a column's
/// header, the filter box, a frame's click, the search box), and the DOM
/// shows what growth_sites holds, known by construction, at each step.
#[test]
fn issue_17_the_report_explores_sites_snapshots_and_flame_graphs_in_chromium() {
    let steps = 4;
    let dir = record_steps("explorer", steps, "full");
    let scratch_dir = dir.parent().expect("scratch").to_path_buf();
    let page = scratch_dir.join("report.html");
    stdout(leaktrail().arg("report").arg(&dir).arg("-o").arg(&page));
    let html = std::fs::read_to_string(&page).expect("report.html");
    assert!(
        !html.contains("src=\"http") && !html.contains("<link"),
        "loads nothing"
    );
    let explore = |hash: &str| {
        let (dom, stderr) = headless_at(&page, hash, "--dump-dom", &scratch_dir);
        assert!(
            dom.contains("data-explored=\"yes\""),
            "{hash}: the steps ran"
        );
        assert!(
            dom.contains("data-errors=\"0\""),
            "{hash}: console errors: {}",
            element_text(&dom, "errors")
        );
        assert!(!stderr.contains("Uncaught"), "{stderr}");
        dom
    };
    // Sizes by construction: 1900 + 100 (churned) buffers of 1000 B, 100
    // of 4096 B per step, 500 of 8000 B from step 3.
    let pool = 2000 * 1000;
    let grown = |k: u64| 100 * 4096 * k;
    let burst = 500 * 8000;

    // The first snapshot, sorted by buffers (a click on the header).
    let dom = explore("#explore:snap=0;sortclick=count");
    let status = element_text(&dom, "flame-status");
    assert!(
        status.starts_with("snapshot 0001.core (1 of 4): 2.3 MiB live; zoom: all"),
        "{status}"
    );
    assert_eq!(pool + grown(1), 2_409_600, "2.3 MiB");
    assert!(
        element_text(&dom, "sites-status").contains("sorted by count (largest first)"),
        "{}",
        element_text(&dom, "sites-status")
    );
    let rows = site_rows(&dom);
    assert!(rows[0][0].starts_with("fill_pool ("), "{rows:?}");
    assert_eq!(rows[0][2..4], ["1.8 MiB", "1,900"], "{rows:?}");
    let grow = rows
        .iter()
        .find(|r| r.iter().any(|c| c.starts_with("grow_cache (")))
        .expect("grow_cache's row");
    assert_eq!(grow[0], "#1", "the first suspect: {grow:?}");
    assert!(
        grow.contains(&"400.0 KiB".to_string()) && grow.contains(&"100".to_string()),
        "{grow:?}"
    );
    // heaptrack's numbers for the site (issue 17, item 3): allocations,
    // temporary, peak so far, after the growth column.
    assert_eq!(grow[6..9], ["100", "0", "400.0 KiB"], "{grow:?}");
    let header = element_text(&dom, "sites-table");
    assert!(
        header.contains("|allocations||temporary||peak|"),
        "{header}"
    );
    let frames = flame_frames(&dom);
    assert!(
        frames
            .iter()
            .any(|f| f.0 == "grow_cache" && f.1 == grown(1)),
        "{frames:?}"
    );
    assert!(
        !frames.iter().any(|f| f.0 == "burst"),
        "no burst before step 3: {frames:?}"
    );
    let classes = element_text(&dom, "classes-at");
    assert!(classes.contains("|4096 B||400.0 KiB||100|"), "{classes}");
    assert!(!classes.contains("8192 B"), "{classes}");

    // The last snapshot, zoomed into grow_cache by a click on its frame.
    let dom = explore(&format!("#explore:snap={};click=grow_cache", steps - 1));
    let status = element_text(&dom, "flame-status");
    let total = pool + grown(steps as u64) + burst;
    assert_eq!(total, 7_638_400, "7.3 MiB");
    assert!(status.contains("(4 of 4): 7.3 MiB live"), "{status}");
    assert!(
        status.contains("> run_step > grow_cache (1.6 MiB)"),
        "{status}"
    );
    // The counts follow the slider: four steps of 100, never freed.
    let rows = site_rows(&dom);
    let grow = rows
        .iter()
        .find(|r| r.iter().any(|c| c.starts_with("grow_cache (")))
        .expect("grow_cache's row");
    assert_eq!(grow[6..9], ["400", "0", "1.6 MiB"], "{grow:?}");
    let frames = flame_frames(&dom);
    assert_eq!(
        frames[0].0, "grow_cache",
        "the zoomed frame is the base: {frames:?}"
    );
    assert_eq!(frames[0].1, grown(steps as u64));
    assert!(
        frames.iter().all(|f| f.0 != "fill_pool" && f.0 != "burst"),
        "only grow_cache's frames: {frames:?}"
    );

    // A search marks the pool's two sites and sums them.
    let dom = explore(&format!("#explore:snap={};search=pool", steps - 1));
    let status = element_text(&dom, "flame-status");
    assert!(status.contains("search \"pool\": 1.9 MiB"), "{status}");
    let mut marked: Vec<String> = flame_frames(&dom)
        .into_iter()
        .filter(|f| f.2)
        .map(|f| f.0)
        .collect();
    marked.sort();
    assert_eq!(marked, ["churn_pool", "fill_pool"]);

    // The filter keeps the sites whose stack mentions the text.
    let dom = explore("#explore:filter=burst");
    let rows = site_rows(&dom);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].iter().any(|c| c.starts_with("burst (")), "{rows:?}");
    assert!(rows[0].contains(&"3.8 MiB".to_string()), "{rows:?}");

    // Each suspect links to its stack, its findleaks group, its owner chain.
    let head = &dom[dom.find("id=\"suspect-1\"").expect("suspect 1")..];
    let head = &head[..head.find("</pre>").expect("its stack")];
    assert!(
        head.contains("4096 B") && head.contains("grow_cache"),
        "{head}"
    );
    assert!(
        head.contains("href=\"#stack-1\"") && head.contains("href=\"#chain-1\""),
        "{head}"
    );
    let leak = head
        .split("href=\"#leak-")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no leaks link: {head}"));
    let group = element_text(&dom, &format!("leak-{leak}"));
    assert!(
        group.contains("still reachable") && group.contains("grow_cache"),
        "{group}"
    );
    assert!(element_text(&dom, "stack-1").contains("grow_cache"));
    let chain = element_text(&dom, "chain-1");
    assert!(
        chain.contains("shortest path(s)") && chain.contains("-> 0x"),
        "{chain}"
    );
    assert!(chain.contains("grow_cache"), "{chain}");
}
