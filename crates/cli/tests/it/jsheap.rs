//! The JS heap from the same snapshots (issue 14, item 4): `jsobjects`,
//! `jsprint`, and the JS heap's growth in `growth`, `trend` and the
//! report, on the installed node, through V8's postmortem metadata.
//!
//! `fixtures/node/jsheap.js` keeps 4,000 `Listener` objects a step, each
//! holding a closure `onEvent`, and one `Marker` whose `literal` is an
//! object literal with a string, a number and an array; it collects
//! garbage (`--expose-gc`) before each snapshot, so what is counted is
//! what it keeps; then it keeps 4,000 young `Fresh` objects (the last
//! step's replaced) and makes 4,000 `Discarded` objects it drops: garbage
//! the census must not count. Its `Texts` holds two external strings (Node makes a
//! large Buffer's string external): 1,200,000 Latin-1 and 1,200,000
//! UTF-16 characters.
//!
//! A handle leak (`stepper.js handles`: the addon makes 1,000 strong N-API
//! references a step to one object) is told from the closures' JS-heap
//! leak by V8's own global-handle count.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::{
    assert_bad_input, json, leaktrail, leaktrail_json, record_in_steps, repo_root, scratch, stdout,
};

/// Listeners (and closures) the fixture keeps per step.
const PER_STEP: u64 = 4000;
/// Steps, one full snapshot after each.
const STEPS: usize = 5;

/// The recording of `jsheap.js` under the tracer with `--memory full`
/// snapshots, made once per test run: its directory and snapshots.
fn recorded() -> &'static (PathBuf, Vec<PathBuf>) {
    static REC: OnceLock<(PathBuf, Vec<PathBuf>)> = OnceLock::new();
    REC.get_or_init(|| {
        let dir = scratch("node_jsheap").join("rec");
        let script = repo_root().join("fixtures/node/jsheap.js");
        let per_step = PER_STEP.to_string();
        let argv: [&OsStr; 4] = [
            "node".as_ref(),
            "--expose-gc".as_ref(),
            script.as_os_str(),
            per_step.as_ref(),
        ];
        record_in_steps(&dir, "full", &argv, STEPS);
        let snaps = snapshots_of(&dir);
        assert_eq!(snaps.len(), STEPS, "{snaps:?}");
        (dir, snaps)
    })
}

/// `jsobjects --json`'s entry for `constructor` (count, bytes).
fn census_of(doc: &Value, constructor: &str) -> (u64, u64) {
    doc["constructors"]
        .as_array()
        .expect("constructors")
        .iter()
        .find(|c| c["constructor"] == constructor)
        .map(|c| (c["count"].as_u64().unwrap(), c["bytes"].as_u64().unwrap()))
        .unwrap_or((0, 0))
}

#[test]
fn issue_14_a_js_heap_leak_of_closures_is_named_by_its_constructor() {
    let (dir, snaps) = recorded();
    let first = leaktrail_json([
        OsStr::new("jsobjects"),
        OsStr::new("--json"),
        snaps[0].as_os_str(),
    ]);
    let last = leaktrail_json([
        OsStr::new("jsobjects"),
        OsStr::new("--json"),
        snaps[STEPS - 1].as_os_str(),
    ]);
    // Exactly what the program keeps: 4,000 a step, by constructor, and
    // the closures by the function they run.
    let n = STEPS as u64;
    let (listeners, listener_bytes) = census_of(&last, "Listener");
    assert_eq!(census_of(&first, "Listener").0, PER_STEP);
    assert_eq!(listeners, PER_STEP * n);
    assert_eq!(census_of(&first, "Function onEvent").0, PER_STEP);
    assert_eq!(census_of(&last, "Function onEvent").0, PER_STEP * n);
    // A Listener has two in-object fields after the JSObject header.
    assert_eq!(listener_bytes, listeners * 40);
    assert_eq!(census_of(&last, "Marker").0, 1);
    // Anonymous functions by their script: the three kept closures of one
    // arrow and readline's `close` handler, not every anonymous function
    // of the process (Node's own count under `node:…` names).
    // (V8 names the script by its resolved path.)
    let script = repo_root()
        .join("fixtures/node/jsheap.js")
        .canonicalize()
        .expect("the fixture");
    let anonymous = format!("Function (anonymous) {}", script.display());
    assert_eq!(census_of(&last, &anonymous).0, 4, "{last:#}");
    // Made since the last collection: the young objects kept are counted
    // (they lie above the new space's high-water mark: a scan to the mark
    // counts 0), the garbage is not (on V8's pages, unreachable: without
    // the marking all 4,000 count). The marking is conservative: a stale
    // word in memory V8 keeps (a compiler zone's leftovers) can keep a few
    // dropped objects counted, never lose a kept one.
    for doc in [&first, &last] {
        let fresh = census_of(doc, "Fresh").0;
        assert!(
            (PER_STEP..PER_STEP + PER_STEP / 10).contains(&fresh),
            "{fresh}"
        );
        let discarded = census_of(doc, "Discarded").0;
        assert!(discarded < PER_STEP / 10, "{discarded}");
    }
    // V8's own numbers: the old space holds them, within what V8 committed.
    let old = last["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "old_space")
        .expect("old_space");
    assert!(old["used"].as_u64().unwrap() >= listener_bytes);
    assert!(old["used"].as_u64().unwrap() <= old["committed"].as_u64().unwrap());

    // growth: the JS heap leaks, the closures and Listeners grow steadily.
    let growth = leaktrail_json([OsStr::new("growth"), OsStr::new("--json"), dir.as_os_str()]);
    let js = &growth["js_heap"];
    assert_eq!(js["verdict"], "leak", "{js:#}");
    let steady: Vec<(&str, i64)> = js["constructors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["grows_steadily"] == true)
        .map(|c| {
            (
                c["constructor"].as_str().unwrap(),
                c["count_delta"].as_i64().unwrap(),
            )
        })
        .collect();
    let gained = (PER_STEP * (n - 1)) as i64;
    assert_eq!(
        steady[..2],
        [("Function onEvent", gained), ("Listener", gained)],
        "{steady:?}"
    );
    let text = stdout(leaktrail().arg("growth").arg(dir));
    assert!(
        text.contains("JS heap (V8, from the snapshots' memory):\n  +16,000 Function onEvent objects (+1000.0 KiB), +16,000 Listener objects (+625.0 KiB)"),
        "{text}"
    );

    // The report: its headline says the JS heap grows and names them.
    let views = crate::node::Recorded::of(dir.clone(), "js-heap leak of closures");
    let headline = &views.headline;
    assert!(
        headline.starts_with(
            "growth in the JS heap: +16,000 Function onEvent objects (+1000.0 KiB), +16,000 Listener objects (+625.0 KiB)"
        ),
        "{headline}"
    );
    // The JS heap is ranked beside the malloc sites, once: every view
    // (growth's JSON and text, the page's diagnosis, trend) names it.
    views.assert_every_view_names(crate::node::Culprit::JsHeap("Listener"));
    let html = dir.with_file_name("report.html");
    let page = std::fs::read_to_string(&html).expect("report");
    assert!(page.contains("Node.js: the JS heap"));
    assert!(
        page.contains("<td>Listener</td><td>4,000</td><td>20,000</td>"),
        "the report's JS heap table"
    );
}

/// Global handles the handle scenario makes per step (40 references in
/// each of the stepper's 25 calls).
const HANDLES_PER_STEP: i64 = 1000;

#[test]
fn issue_14_a_handle_leak_is_told_from_a_js_heap_leak() {
    let dir = scratch("node_handles").join("rec");
    let stepper = repo_root().join("fixtures/node/stepper.js");
    let addon = crate::node::addon();
    let argv: [&OsStr; 5] = [
        "node".as_ref(),
        "--expose-gc".as_ref(),
        stepper.as_os_str(),
        "handles".as_ref(),
        addon.as_os_str(),
    ];
    record_in_steps(&dir, "full", &argv, STEPS);
    // growth: V8's global handles rise by exactly what the addon made,
    // every step, and no constructor's objects grow: a handle leak.
    let growth = leaktrail_json([OsStr::new("growth"), OsStr::new("--json"), dir.as_os_str()]);
    let js = &growth["js_heap"];
    assert_eq!(js["verdict"], "handle leak", "{js:#}");
    let handles: Vec<i64> = js["global_handles"]
        .as_array()
        .expect("global handles found in every snapshot")
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(handles.len(), STEPS);
    let steps: Vec<i64> = handles.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(steps, vec![HANDLES_PER_STEP; STEPS - 1], "{handles:?}");
    assert!(
        js["handle_scope_blocks"]
            .as_array()
            .expect("handle-scope blocks found")
            .iter()
            .all(|b| b.as_u64().unwrap() >= 1),
        "{js:#}"
    );
    let text = stdout(leaktrail().arg("growth").arg(&dir));
    let count = |n: i64| leaktrail_report::heap::count(n as u64);
    // 4 steps of 1,000.
    let line = format!(
        "V8 global handles {} → {} (+4,000)",
        count(handles[0]),
        count(handles[STEPS - 1]),
    );
    assert!(text.contains(&line), "{line}\n{text}");
    assert!(text.contains("a handle leak"), "{text}");
    // jsobjects: the same count, strong, from one snapshot.
    let last = leaktrail_json([
        OsStr::new("jsobjects"),
        OsStr::new("--json"),
        snapshots_of(&dir)[STEPS - 1].as_os_str(),
    ]);
    let g = &last["global_handles"];
    assert_eq!(g["in_use"].as_i64(), Some(handles[STEPS - 1]), "{g}");
    assert!(g["strong"].as_i64().unwrap() >= HANDLES_PER_STEP * STEPS as i64);
    // trend's owner split carries the count too.
    let trend = leaktrail_json([OsStr::new("trend"), OsStr::new("--json"), dir.as_os_str()]);
    assert_eq!(
        trend["owners"]["global_handles"],
        Value::from(handles.clone()),
        "{:#}",
        trend["owners"]
    );
    let html = dir.with_file_name("report.html");
    let headline = stdout(leaktrail().arg("report").arg(&dir).arg("-o").arg(&html));
    eprintln!("report headline [handle leak]: {}", headline.trim_end());
    let page = std::fs::read_to_string(&html).expect("report");
    assert!(
        page.contains("a handle leak"),
        "the report's JS heap section"
    );

    // The closures' JS-heap leak is a leak of objects, not of handles.
    let (closures, _) = recorded();
    let growth = leaktrail_json([
        OsStr::new("growth"),
        OsStr::new("--json"),
        closures.as_os_str(),
    ]);
    assert_eq!(growth["js_heap"]["verdict"], "leak");
    assert!(growth["js_heap"]["global_handles"].is_array());
}

/// The step snapshots of the recording in `dir`, oldest first.
fn snapshots_of(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(dir.join("snapshots"))
        .expect("snapshots")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.extension() == Some(OsStr::new("core"))
                && !p.to_string_lossy().ends_with("-exit.core")
        })
        .collect();
    snaps.sort();
    snaps
}

#[test]
fn issue_14_jsprint_prints_a_known_object_literal() {
    let (_, snaps) = recorded();
    let snap = &snaps[STEPS - 1];
    // Found by its constructor, then printed with its members.
    let addrs = stdout(
        leaktrail()
            .arg("jsobjects")
            .arg(snap)
            .args(["--constructor", "Marker"]),
    );
    let addrs: Vec<&str> = addrs.lines().collect();
    assert_eq!(addrs.len(), 1, "{addrs:?}");
    let doc = json(
        leaktrail()
            .arg("jsprint")
            .arg(snap)
            .arg(addrs[0])
            .args(["--depth", "3", "--json"]),
    );
    let marker = &doc["value"];
    assert_eq!(marker["kind"], "object");
    assert_eq!(marker["constructor"], "Marker");
    let props = marker["properties"].as_array().unwrap();
    assert_eq!(props.len(), 1);
    assert_eq!(props[0]["name"], "literal");
    let literal = &props[0]["value"];
    assert_eq!(literal["constructor"], "Object");
    let fields: Vec<(&str, &Value)> = literal["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), &p["value"]))
        .collect();
    assert_eq!(fields.len(), 3, "{fields:?}");
    assert_eq!(fields[0].0, "label");
    assert_eq!(fields[0].1["kind"], "string");
    assert_eq!(fields[0].1["value"], "leaktrail-marker-7d3f");
    assert_eq!(fields[1].0, "count");
    assert_eq!(fields[1].1["kind"], "number");
    assert_eq!(fields[1].1["value"], 42.5);
    assert_eq!(fields[2].0, "items");
    let items = fields[2].1;
    assert_eq!(items["constructor"], "Array");
    assert_eq!(items["length"], 3);
    let elements: Vec<String> = items["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}:{}", e["kind"].as_str().unwrap(), e["value"]))
        .collect();
    assert_eq!(elements, ["smi:1", "string:\"two\"", "number:3.25"]);
    // As text, and depth-limited: the default depth (2) stops at the array.
    let text = stdout(leaktrail().arg("jsprint").arg(snap).arg(addrs[0]));
    let want = ": Marker {\n    literal: Object {\n        label: \"leaktrail-marker-7d3f\",\n        count: 42.5,\n        items: <Array 0x";
    assert!(text.contains(want), "{text}");
    let deep = stdout(
        leaktrail()
            .arg("jsprint")
            .arg(snap)
            .arg(addrs[0])
            .args(["--depth", "3"]),
    );
    assert!(
        deep.contains("        items: [1, \"two\", 3.25],\n    },\n}\n"),
        "{deep}"
    );
    let shallow = stdout(
        leaktrail()
            .arg("jsprint")
            .arg(snap)
            .arg(addrs[0])
            .args(["--depth", "1"]),
    );
    assert!(shallow.contains("    literal: <Object 0x"), "{shallow}");
    // External strings: their characters, read off the JS heap through
    // the resource's data pointer, one byte and two bytes each.
    let texts = stdout(
        leaktrail()
            .arg("jsobjects")
            .arg(snap)
            .args(["--constructor", "Texts"]),
    );
    let doc = json(
        leaktrail()
            .arg("jsprint")
            .arg(snap)
            .arg(texts.trim())
            .args(["--json"]),
    );
    let props = doc["value"]["properties"].as_array().expect("Texts fields");
    for (prop, unit) in [
        (&props[0], "leaktrail-external-"),
        (&props[1], "leaktrail-\u{20ac}-utf16-"),
    ] {
        let v = &prop["value"];
        assert_eq!(v["kind"], "string", "{v}");
        assert_eq!(v["length"], 1_200_000, "{v}");
        assert_eq!(v["truncated"], true);
        let text = v["value"].as_str().unwrap();
        let want: String = unit
            .repeat(4096 / unit.chars().count() + 1)
            .chars()
            .take(4096)
            .collect();
        assert_eq!(text, want, "{}", prop["name"]);
    }
    // jsobjects counts external strings' characters on their own line:
    // these two, 1,200,000 + 2,400,000 bytes, beside Node's own sources.
    let census = leaktrail_json([
        OsStr::new("jsobjects"),
        OsStr::new("--json"),
        snap.as_os_str(),
    ]);
    let ext = census["external_strings"]["bytes"].as_u64().unwrap();
    assert!(ext >= 3_600_000, "{:#}", census["external_strings"]);
    let first = leaktrail_json([
        OsStr::new("jsobjects"),
        OsStr::new("--json"),
        snaps[0].as_os_str(),
    ]);
    // Made at the start, kept to the end (Node's own come and go).
    let first_ext = first["external_strings"]["bytes"].as_u64().unwrap();
    assert!(first_ext >= 3_600_000, "{first_ext}");
    let text = stdout(leaktrail().arg("jsobjects").arg(snap));
    assert!(text.contains("of characters off the JS heap"), "{text}");

    // An address that is no object: one line, exit status 2.
    assert_bad_input(
        leaktrail().arg("jsprint").arg(snap).arg("0x10"),
        &["0x10 is not a V8 heap object"],
    );
    assert_bad_input(
        leaktrail()
            .arg("jsobjects")
            .arg(snap)
            .args(["--constructor", "NoSuchClass"]),
        &["no JS object of constructor \"NoSuchClass\""],
    );
}
