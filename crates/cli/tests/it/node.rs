//! Node.js end to end (issue 7): leaks we build ourselves, recorded under
//! `leaktrail run -- node ...`, snapshotted between steps; `growth` must put
//! the responsible stack first, showing both the JS function and the native
//! function, and find nothing above noise in a steady control. Issue 14:
//! one suspect for a function V8 tiers up mid-run, the allocating line of
//! a callee TurboFan inlined (from V8's jitdump), and a Node user's words.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{
    fixture_library, leaktrail, leaktrail_json, record_in_steps, repo_root, scratch, stdout,
};

/// The N-API addon, compiled once per test run against Node's headers
/// (in `/usr/include/node`).
pub(crate) fn addon() -> PathBuf {
    fixture_library("node/addon", ".node", &["-I/usr/include/node"])
}

/// What a recording of a Node.js scenario says, in every view that names
/// what grows.
pub(crate) struct Recorded {
    pub(crate) dir: PathBuf,
    pub(crate) growth: Value,
    /// `growth`'s text.
    pub(crate) growth_text: String,
    /// `trend --json`'s split by owner.
    pub(crate) owners: Value,
    /// The HTML report.
    pub(crate) html: String,
    /// The headline `report` printed (its first line).
    pub(crate) headline: String,
}

/// Who every view must name as what grows.
pub(crate) enum Culprit<'a> {
    /// The JS heap, with this constructor among those that grow.
    JsHeap(&'a str),
    /// The malloc site named at this function (the first frame outside
    /// allocation plumbing), owned by this owner (`trend`'s name).
    Site(&'a str, &'a str),
    /// Nothing grows above noise.
    Nothing,
}

impl Recorded {
    /// Reads every view of the recording at `dir`; `name` tags the
    /// headline on stderr (`report headline [NAME]: ...`, which
    /// bench/node-headlines/run.py collects).
    pub(crate) fn of(dir: PathBuf, name: &str) -> Recorded {
        let growth = leaktrail_json([OsStr::new("growth"), OsStr::new("--json"), dir.as_os_str()]);
        let growth_text = stdout(leaktrail().arg("growth").arg(&dir));
        let trend = leaktrail_json([OsStr::new("trend"), OsStr::new("--json"), dir.as_os_str()]);
        let html = dir.with_file_name("report.html");
        let printed = stdout(leaktrail().arg("report").arg(&dir).arg("-o").arg(&html));
        let headline = printed.lines().next().unwrap_or("").to_string();
        eprintln!("report headline [{name}]: {headline}");
        let html = std::fs::read_to_string(&html).expect("report written");
        Recorded {
            dir,
            growth,
            growth_text,
            owners: trend["owners"].clone(),
            html,
            headline,
        }
    }

    /// Every view names `culprit` and no other: the report's headline
    /// (printed and on the page), the page's diagnosis line, `growth`'s
    /// `first suspect:` line and `first_suspect` in its JSON, and the owner
    /// `trend` says grows.
    pub(crate) fn assert_every_view_names(&self, culprit: Culprit<'_>) {
        let h = &self.headline;
        assert!(
            self.html.contains(&format!(
                "<p class=\"headline\"><b>{}</b></p>",
                leaktrail_report::html::escape(h)
            )),
            "the page's headline is the printed one: {h}"
        );
        assert!(
            self.growth_text
                .contains(&format!("\nfirst suspect: {h}\n")),
            "growth's first suspect is the headline's ({h}):\n{}",
            self.growth_text
        );
        let first = &self.growth["first_suspect"];
        let growing = &self.owners["growing"];
        match culprit {
            Culprit::JsHeap(constructor) => {
                assert!(h.starts_with("growth in the JS heap: "), "{h}");
                assert!(h.contains(&format!(" {constructor} objects")), "{h}");
                assert_eq!(first["kind"], "js_heap", "{first:#}");
                assert_eq!(first["headline"], h.as_str(), "{first:#}");
                let li = diagnosis_line(&self.html, "<li>What grows: <b>the JS heap</b>: ");
                assert!(li.contains(&format!(" {constructor} objects")), "{li}");
                assert_eq!(growing, "v8_heap", "{:#}", self.owners);
            }
            Culprit::Site(function, owner) => {
                assert!(
                    h.starts_with(&format!("growth above noise: {function} ")),
                    "{h}"
                );
                assert_eq!(first["kind"], "site", "{first:#}");
                assert_eq!(first["headline"], h.as_str(), "{first:#}");
                let li = diagnosis_line(&self.html, "<li>The leaking function: ");
                assert!(
                    li.starts_with(&leaktrail_report::html::escape(function)),
                    "{li}"
                );
                assert!(!self.html.contains("<li>What grows: <b>the JS heap</b>"));
                assert_eq!(growing, owner, "{:#}", self.owners);
            }
            Culprit::Nothing => {
                assert!(h.starts_with("no growth above noise"), "{h}");
                assert!(first.is_null(), "{first:#}");
                assert_eq!(self.growth["grows_above_noise"], false);
                let li = diagnosis_line(&self.html, "<li>The leaking function: ");
                assert!(li.starts_with("none: no growth above noise"), "{li}");
                assert!(growing.is_null(), "{:#}", self.owners);
            }
        }
    }
}

/// The rest of the report's diagnosis item that starts with `lead`.
fn diagnosis_line<'a>(html: &'a str, lead: &str) -> &'a str {
    let at = html
        .find(lead)
        .unwrap_or_else(|| panic!("no diagnosis line {lead:?} in the report"));
    let rest = &html[at + lead.len()..];
    &rest[..rest.find("</li>").unwrap_or(rest.len())]
}

/// Runs `stepper.js SCENARIO` under the tracer, snapshots the recording
/// after each of `steps` steps, and returns what it says.
fn growth_of(scenario: &str, steps: usize) -> Recorded {
    let stepper = repo_root().join("fixtures/node/stepper.js");
    let addon = addon();
    record(
        scenario,
        &[
            "--expose-gc".as_ref(),
            stepper.as_os_str(),
            scenario.as_ref(),
            addon.as_os_str(),
        ],
        steps,
    )
}

/// Runs `node ARGS` under the tracer for `steps` steps (`name` names the
/// scratch directory) and reads what the recording says.
fn record(name: &str, args: &[&OsStr], steps: usize) -> Recorded {
    record_with(name, "tables", args, steps)
}

/// [`record`] with snapshots of `memory` (`full` for the JS heap).
pub(crate) fn record_with(name: &str, memory: &str, args: &[&OsStr], steps: usize) -> Recorded {
    let dir = scratch(&format!("node_{name}")).join("rec");
    let mut argv: Vec<&OsStr> = vec!["node".as_ref()];
    argv.extend(args);
    let pid = record_in_steps(&dir, memory, &argv, steps);
    assert!(
        !Path::new(&format!("/tmp/perf-{pid}.map")).exists(),
        "the perf map of node (pid {pid}) is removed after the run"
    );
    assert!(
        dir.join("jit.dump").is_file(),
        "V8's jitdump is kept in the recording"
    );
    Recorded::of(dir, name)
}

/// `tiers.js SCENARIO` with V8's natives syntax, for `steps` steps.
fn tiers(scenario: &str, steps: usize) -> Recorded {
    let script = repo_root().join("fixtures/node/tiers.js");
    record(
        scenario,
        &[
            "--allow-natives-syntax".as_ref(),
            "--expose-gc".as_ref(),
            script.as_os_str(),
            scenario.as_ref(),
        ],
        steps,
    )
}

/// A JS frame as the tests compare them: (function, line, inlined).
type JsFrame = (String, u64, bool);

/// The JS frames of a suspect's stack.
fn js_frames(suspect: &Value) -> Vec<JsFrame> {
    suspect["stack"]
        .as_array()
        .expect("stack")
        .iter()
        .filter(|f| f["kind"] == "js")
        .map(|f| {
            (
                f["function"].as_str().unwrap_or("??").to_string(),
                f["line"].as_u64().unwrap_or(0),
                f["inlined"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// The live count of a suspect's site at each snapshot.
fn series_counts(suspect: &Value) -> Vec<u64> {
    suspect["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|p| p["count"].as_u64().expect("count"))
        .collect()
}

fn functions(suspect: &Value) -> Vec<(String, String)> {
    suspect["stack"]
        .as_array()
        .expect("stack")
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or("").to_string(),
                f["function"].as_str().unwrap_or("??").to_string(),
            )
        })
        .collect()
}

fn has(frames: &[(String, String)], kind: &str, needle: &str) -> bool {
    frames.iter().any(|(k, f)| k == kind && f.contains(needle))
}

#[test]
fn native_leak_in_an_addon_is_ranked_first_with_its_js_caller() {
    let r = growth_of("native-leak", 5);
    let (growth, owners) = (&r.growth, &r.owners);
    assert_eq!(owners["growing"], "native", "{owners}");
    let top = &growth["suspects"][0];
    let frames = functions(top);
    assert_eq!(top["class"], 1024, "1000-byte blocks: the 1024 B class");
    assert_eq!(top["owner"], "native");
    assert!(has(&frames, "native", "addon_leak_blocks"), "{frames:?}");
    assert!(has(&frames, "js", "handleRequest"), "{frames:?}");
    // 25 calls x 20 blocks per step, all kept.
    let series = top["series"].as_array().expect("series");
    let first = series.first().expect("first")["count"]
        .as_u64()
        .expect("count");
    let last = series.last().expect("last")["count"]
        .as_u64()
        .expect("count");
    assert!(last - first >= 500 * 3, "{first} -> {last}");
    // Every view names the addon's function, not operator new or Node.
    r.assert_every_view_names(Culprit::Site("addon_leak_blocks", "native"));
}

#[test]
fn buffers_retained_by_a_js_structure_are_ranked_first() {
    let r = growth_of("buffers", 5);
    let (growth, owners, html) = (&r.growth, &r.owners, &r.html);
    assert_eq!(owners["growing"], "array_buffers", "{owners}");
    // The report shows the split, the growing owner marked.
    assert!(html.contains("id=\"owners\""));
    assert!(html.contains("<tr class=\"grows\"><td>ArrayBuffer/Buffer backing stores</td>"));
    let top = &growth["suspects"][0];
    let frames = functions(top);
    assert_eq!(top["class"], 4096);
    assert_eq!(top["owner"], "array_buffers");
    assert!(has(&frames, "js", "retainBuffers"), "{frames:?}");
    assert!(has(&frames, "native", "ArrayBufferAllocator"), "{frames:?}");
}

/// Issue 14 (item 1): a steady Node program: V8's own bookkeeping wobbles
/// between snapshots, and nothing rises significantly.
#[test]
fn a_steady_control_shows_no_growth_above_noise() {
    let stepper = repo_root().join("fixtures/node/stepper.js");
    let addon = addon();
    let r = record(
        "steady",
        &[
            "--expose-gc".as_ref(),
            stepper.as_os_str(),
            "steady".as_ref(),
            addon.as_os_str(),
        ],
        6,
    );
    assert_eq!(r.growth["grows_above_noise"], false, "{:#}", r.growth);
    for s in r.growth["suspects"].as_array().expect("suspects") {
        assert_eq!(
            s["stats"]["significant"],
            false,
            "a suspect above noise in a steady program: {:?}",
            functions(s).iter().take(6).collect::<Vec<_>>()
        );
    }
    assert!(
        r.headline.starts_with(
            "no growth above noise: no allocation site rises significantly over 6 snapshots"
        ),
        "{}",
        r.headline
    );
    assert!(r
        .html
        .contains("<p class=\"headline\"><b>no growth above noise: "));
    r.assert_every_view_names(Culprit::Nothing);
}

/// Issue 14 (item 2): one function, interpreted for two steps and
/// optimized by TurboFan from the third, is one suspect: its code objects
/// differ (and so do the builtins it enters the allocator through), its
/// identity does not.
#[test]
fn issue_14_a_function_tiered_up_mid_run_is_one_suspect() {
    let r = tiers("tierup", 5);
    // The last snapshot holds leakBlocks' buffers under several distinct
    // stacks (the flame graph keys sites by code address).
    let last = r.dir.join("snapshots/0005.core");
    let folded = stdout(
        leaktrail()
            .args(["flamegraph", "--folded", "--size", "4096..4096"])
            .arg(&last),
    );
    let stacks = folded
        .lines()
        .filter(|l| l.contains("JS leakBlocks"))
        .count();
    assert!(stacks >= 2, "one stack per tier expected:\n{folded}");
    let with_leak: Vec<&Value> = r.growth["suspects"]
        .as_array()
        .expect("suspects")
        .iter()
        .filter(|s| s["class"] == 4096 && js_frames(s).iter().any(|f| f.0 == "leakBlocks"))
        .collect();
    assert_eq!(with_leak.len(), 1, "{:#}", r.growth["suspects"]);
    let s = with_leak[0];
    assert_eq!(s["rank"], 1);
    assert_eq!(s["stats"]["significant"], true);
    // Steps 2 to 5 (step 1 is called from the script's top level: another
    // stack, flat): 500 buffers each, before and after the tier-up alike.
    let counts = series_counts(s);
    assert_eq!(counts, [0, 500, 1000, 1500, 2000]);
    assert!(
        r.headline.starts_with(
            "growth above noise: leakBlocks (tiers.js:22) keeps 4096 B buffers: 0 → 2,000 buffers"
        ),
        "{}",
        r.headline
    );
}

/// Issue 14 (item 3): TurboFan inlines makeBlock into serveRequests; the
/// allocation's JS frames name makeBlock, inlined, at its allocating line
/// (tiers.js:26, `new ArrayBuffer(4096)`), in `growth --json` and the
/// report.
#[test]
fn issue_14_an_inlined_callee_is_named_with_its_allocating_line() {
    let r = tiers("inlined", 5);
    let top = &r.growth["suspects"][0];
    assert_eq!(top["class"], 4096);
    let js = js_frames(top);
    assert_eq!(
        js[..2],
        [
            ("makeBlock".into(), 26, true),
            ("serveRequests".into(), 31, false)
        ],
        "{js:?}"
    );
    assert!(
        r.html.contains("JS makeBlock ") && r.html.contains("tiers.js:26:17 (inlined)"),
        "the report shows the inlined frame with its line"
    );
    assert!(
        r.headline
            .starts_with("growth above noise: makeBlock (tiers.js:26) keeps 4096 B buffers"),
        "{}",
        r.headline
    );
}

/// Issue 14 (item 3): a chain TurboFan inlined whole (`handleBatch` →
/// `parseBody` → `makeChunk`, which allocates) keeps its middle frame:
/// V8's jitdump names only the innermost call, so the calls between come
/// from the optimized code's deoptimization data in the full snapshots.
/// Each frame is at its call's line, and the blocks allocated before the
/// optimization (every frame a real one) and after are one suspect.
#[test]
fn issue_14_a_chain_inlined_whole_keeps_its_middle_frame() {
    let script = repo_root().join("fixtures/node/tiers.js");
    let r = record_with(
        "chain",
        "full",
        &[
            "--allow-natives-syntax".as_ref(),
            "--expose-gc".as_ref(),
            script.as_os_str(),
            "chain".as_ref(),
        ],
        5,
    );
    let top = &r.growth["suspects"][0];
    assert_eq!(top["class"], 2048);
    let js = js_frames(top);
    assert_eq!(
        js[..3],
        [
            ("makeChunk".into(), 45, true),
            ("parseBody".into(), 51, true),
            ("handleBatch".into(), 57, false)
        ],
        "{js:?}"
    );
    // Steps 2 to 5 (step 1 is called from the script's top level): 400
    // a step, unoptimized in step 2 and optimized from step 3 alike.
    let counts = series_counts(top);
    assert_eq!(counts, [0, 400, 800, 1200, 1600]);
    assert!(
        r.html.contains("JS parseBody ") && r.html.contains("tiers.js:51:15 (inlined)"),
        "the report shows the middle frame with its call's line"
    );
    // Step 1's blocks, made by the callees' Sparkplug code: each frame at
    // its call's line too (from the bytecode the code runs there), and
    // the interpreted handleBatch and next at theirs (from the bytecode
    // offset the tracer read from their frames).
    let first = crate::support::leaktrail_json([
        OsStr::new("bufs"),
        OsStr::new("--json"),
        OsStr::new("--size"),
        OsStr::new("2048..2048"),
        OsStr::new("--group-by"),
        OsStr::new("stack"),
        r.dir.join("snapshots/0001.core").as_os_str(),
    ]);
    let step1: Vec<Vec<(String, u64, bool)>> = first["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter(|g| g["count"] == 400)
        .map(|g| js_frames(g).into_iter().take(4).collect())
        .collect();
    assert_eq!(
        step1,
        [[
            ("makeChunk".into(), 45, false),
            ("parseBody".into(), 51, false),
            ("handleBatch".into(), 57, false),
            ("next".into(), 101, false)
        ]],
        "{:#}",
        first["groups"]
    );
    let last = r.dir.join("snapshots/0005.core");
    let folded = stdout(
        leaktrail()
            .args(["flamegraph", "--folded", "--size", "2048..2048"])
            .arg(&last),
    );
    assert!(
        folded.contains("JS handleBatch;JS parseBody;JS makeChunk"),
        "the flame graph has the whole chain:\n{folded}"
    );
    r.assert_every_view_names(Culprit::Site("makeChunk", "array_buffers"));
}

/// Issue 14 (item 3): an interpreted frame is named at the line of its
/// call. `tiers.js lines`: twoLines(), interpreted throughout, makes
/// 1024 B and 1536 B buffers alternately at lines 68 and 69; both calls
/// come from one interpreted frame with one return address, told apart
/// only by the bytecode offset V8 keeps in the frame, which the tracer
/// notes and the snapshot's bytecode turns into a line. Without the note
/// both are at the function's start (line 66); without the tracer's
/// memo reading it again, the 1536 B buffers take line 68 from the stack
/// before theirs.
#[test]
fn issue_14_an_interpreted_frame_is_named_at_the_line_of_its_call() {
    let script = repo_root().join("fixtures/node/tiers.js");
    let dir = scratch("node_interpreted_lines").join("rec");
    let argv: [&OsStr; 6] = [
        "node".as_ref(),
        "--no-sparkplug".as_ref(),
        "--allow-natives-syntax".as_ref(),
        "--expose-gc".as_ref(),
        script.as_os_str(),
        "lines".as_ref(),
    ];
    record_in_steps(&dir, "full", &argv, 1);
    let bufs = leaktrail_json([
        OsStr::new("bufs"),
        OsStr::new("--json"),
        OsStr::new("--size"),
        OsStr::new("1024..1536"),
        OsStr::new("--group-by"),
        OsStr::new("stack"),
        dir.join("snapshots/0001.core").as_os_str(),
    ]);
    let mut groups: Vec<(u64, u64, Vec<JsFrame>)> = bufs["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            let count = g["count"].as_u64().expect("count");
            let bytes = g["bytes"].as_u64().expect("bytes");
            (
                bytes / count.max(1),
                count,
                js_frames(g).into_iter().take(2).collect(),
            )
        })
        .filter(|(_, _, js): &(u64, u64, Vec<JsFrame>)| {
            js.first().is_some_and(|f| f.0 == "twoLines")
        })
        .collect();
    groups.sort();
    let next = ("next".to_string(), 103, false);
    assert_eq!(
        groups,
        [
            (
                1024,
                150,
                vec![("twoLines".into(), 68, false), next.clone()]
            ),
            (1536, 150, vec![("twoLines".into(), 69, false), next]),
        ],
        "{:#}",
        bufs["groups"]
    );
    // The tracer's per-site counts keep the two calls apart too, each at
    // its line (the function's smaller blocks are V8's and Node's own,
    // made under the same frame).
    let summary = leaktrail_json([OsStr::new("summary"), OsStr::new("--json"), dir.as_os_str()]);
    let mut sites: Vec<(u64, u64, u64)> = summary["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .filter_map(|s| {
            let first = js_frames(s).into_iter().next()?;
            let allocations = s["allocations"].as_u64().expect("allocations");
            let each = s["live_bytes"].as_u64().expect("live_bytes") / allocations.max(1);
            (first.0 == "twoLines" && each >= 1024).then_some((each, allocations, first.1))
        })
        .collect();
    sites.sort();
    assert_eq!(
        sites,
        [(1024, 150, 68), (1536, 150, 69)],
        "{:#}",
        summary["sites"]
    );
}

/// Issue 14 (item 5): the regions and owners in a Node user's words, in
/// `trend`, `growth`, the report, and `watch` of an untraced process.
#[test]
fn issue_14_node_memory_is_told_in_a_node_users_words() {
    let stepper = repo_root().join("fixtures/node/stepper.js");
    let addon = addon();
    let r = record(
        "words",
        &[
            "--expose-gc".as_ref(),
            stepper.as_os_str(),
            "buffers".as_ref(),
            addon.as_os_str(),
        ],
        5,
    );
    assert!(
        r.html.contains("V8 heap (JS)"),
        "the report names the V8 heap"
    );
    assert!(r.html.contains("other native (malloc heap)"));
    let dir = &r.dir;
    let trend = stdout(leaktrail().arg("trend").arg(dir));
    assert!(trend.contains("  V8 heap (JS) "), "{trend}");
    assert!(trend.contains("  other native (malloc heap) "), "{trend}");
    let growth = stdout(leaktrail().arg("growth").arg(dir));
    assert!(
        growth.contains("   owner: ArrayBuffer/Buffer backing stores"),
        "{growth}"
    );
    // watch: no stacks, the regions in the same words.
    let watched = scratch("node_watch").join("rec");
    let out = stdout(
        leaktrail()
            .args(["watch", "--interval", "100ms", "--out"])
            .arg(&watched)
            .args(["--", "node", "-e", "setTimeout(() => {}, 600)"]),
    );
    assert!(out.contains("Node.js memory, from /proc alone:"), "{out}");
    assert!(out.contains("  V8 heap (JS) and other anonymous "), "{out}");
    assert!(out.contains("  malloc heap (native, Buffers) "), "{out}");
    assert!(
        out.contains("\nmalloc heap "),
        "the region table says malloc heap: {out}"
    );
}

/// The JS functions of a frame list that are the program's (not Node's
/// `node:` scripts), innermost first, as every view names them: `JS NAME`.
fn program_js(frames: impl Iterator<Item = (String, String)>) -> Vec<String> {
    frames
        .filter(|(name, file)| name.starts_with("JS ") && !file.starts_with("node:"))
        .map(|(name, _)| name)
        .collect()
}

/// Issue 14 (item 4): every view keys JS frames by function. On a
/// function V8 tiers up mid-run, the growth suspect, the flame graph
/// (folded and SVG) and pprof give `leakBlocks` the same bytes, and pprof
/// has one location per line of it, not one per code object.
#[test]
fn issue_14_every_view_gives_a_js_function_the_same_bytes() {
    let r = tiers("tierup", 5);
    let last = r.dir.join("snapshots/0005.core");
    // growth: the one suspect, its bytes in the last snapshot.
    let suspect = r.growth["suspects"]
        .as_array()
        .expect("suspects")
        .iter()
        .find(|s| s["class"] == 4096 && js_frames(s).iter().any(|f| f.0 == "leakBlocks"))
        .expect("the leakBlocks suspect");
    let growth_bytes = suspect["series"].as_array().unwrap().last().unwrap()["bytes"]
        .as_u64()
        .unwrap();
    assert_eq!(growth_bytes, 2000 * 4096);
    let identity = program_js(suspect["stack"].as_array().unwrap().iter().map(|f| {
        let name = match f["kind"].as_str() {
            Some("js") => format!("JS {}", f["function"].as_str().unwrap_or("")),
            _ => String::new(),
        };
        (name, f["file"].as_str().unwrap_or("").to_string())
    }));
    assert_eq!(identity[0], "JS leakBlocks", "{identity:?}");

    // pprof: the samples of the same JS functions add up to the suspect.
    let out = r.dir.with_file_name("tierup.pb.gz");
    stdout(leaktrail().arg("pprof").arg(&last).arg("-o").arg(&out));
    let p: Value = serde_json::from_str(&stdout(
        std::process::Command::new("python3")
            .arg(repo_root().join("crates/cli/tests/it/pprof_decode.py"))
            .arg(&out),
    ))
    .expect("decoder json");
    let mut pprof_site = 0;
    let mut pprof_all = 0;
    let mut locations = std::collections::BTreeSet::new();
    let mut lines = std::collections::BTreeSet::new();
    for smp in p["samples"].as_array().unwrap() {
        if smp["labels"]["size_class"] != 4096 {
            continue;
        }
        let stack = smp["stack"].as_array().unwrap();
        let js = program_js(stack.iter().map(|f| {
            (
                f["function"].as_str().unwrap_or("").to_string(),
                f["file"].as_str().unwrap_or("").to_string(),
            )
        }));
        if !js.iter().any(|f| f == "JS leakBlocks") {
            continue;
        }
        let bytes = smp["values"][1].as_u64().unwrap();
        pprof_all += bytes;
        if js == identity {
            pprof_site += bytes;
        }
        for f in stack.iter().filter(|f| f["function"] == "JS leakBlocks") {
            locations.insert(f["location"].as_u64().unwrap());
            lines.insert(f["line"].as_u64().unwrap());
        }
    }
    assert_eq!(pprof_site, growth_bytes, "pprof and growth disagree");
    assert_eq!(
        locations.len(),
        lines.len(),
        "one pprof location per line of leakBlocks, not per code object"
    );

    // The flame graph, folded: every stack through leakBlocks (step 1's
    // call from the top level too), the same bytes as pprof.
    let folded = stdout(
        leaktrail()
            .args(["flamegraph", "--folded", "--size", "2049..4096"])
            .arg(&last),
    );
    let folded_all: u64 = folded
        .lines()
        .filter(|l| l.split(';').any(|f| f.starts_with("JS leakBlocks")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(folded_all, pprof_all, "{folded}");
    assert_eq!(folded_all, 2500 * 4096, "steps 1 to 5, 500 buffers each");
    // ... and drawn: the SVG's JS leakBlocks boxes add up to the same.
    let svg = stdout(
        leaktrail()
            .args(["flamegraph", "--size", "2049..4096"])
            .arg(&last),
    );
    let svg_bytes: u64 = svg
        .split("<title>JS leakBlocks (")
        .skip(1)
        .map(|t| {
            let n: String = t
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(|c| *c != ',')
                .collect();
            n.parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(svg_bytes, folded_all, "the SVG's titles");
}
