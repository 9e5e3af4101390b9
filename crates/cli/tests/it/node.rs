//! Node.js end to end (issue 7): leaks we build ourselves, recorded under
//! `leaktrail run -- node ...`, snapshotted between steps; `growth` must put
//! the responsible stack first, showing both the JS function and the native
//! function, and find nothing above noise in a steady control.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{
    fixture_library, leaktrail, leaktrail_json, record_in_steps, repo_root, scratch, success,
};

/// Growth up to this is noise: a steady Node process's own bookkeeping
/// (V8 zones, marking worklists) wobbles by a few KiB between snapshots,
/// and libuv holds a 64 KiB read buffer while a read of stdin is pending.
/// The leaks here grow by hundreds of KiB per step.
const NOISE_BYTES: f64 = 128.0 * 1024.0;

/// The N-API addon, compiled once per test run against Node's headers
/// (in `/usr/include/node`).
fn addon() -> PathBuf {
    fixture_library("node/addon", ".node", &["-I/usr/include/node"])
}

/// Runs `stepper.js SCENARIO` under the tracer, snapshots the recording
/// after each of `steps` steps, and returns `growth --json` of it,
/// `trend --json`'s split by owner, and the HTML report.
fn growth_of(scenario: &str, steps: usize) -> (Value, Value, String) {
    let dir = scratch(&format!("node_{scenario}")).join("rec");
    let stepper = repo_root().join("fixtures/node/stepper.js");
    let addon = addon();
    let argv = [
        "node".as_ref(),
        "--expose-gc".as_ref(),
        stepper.as_os_str(),
        scenario.as_ref(),
        addon.as_os_str(),
    ];
    let pid = record_in_steps(&dir, "tables", &argv, steps);
    assert!(
        !Path::new(&format!("/tmp/perf-{pid}.map")).exists(),
        "the perf map of node (pid {pid}) is removed after the run"
    );
    let growth = leaktrail_json([OsStr::new("growth"), OsStr::new("--json"), dir.as_os_str()]);
    let trend = leaktrail_json([OsStr::new("trend"), OsStr::new("--json"), dir.as_os_str()]);
    let html = dir.with_file_name("report.html");
    success(leaktrail().arg("report").arg(&dir).arg("-o").arg(&html));
    let html = std::fs::read_to_string(&html).expect("report written");
    (growth, trend["owners"].clone(), html)
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
    let (growth, owners, _html) = growth_of("native-leak", 5);
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
}

#[test]
fn buffers_retained_by_a_js_structure_are_ranked_first() {
    let (growth, owners, html) = growth_of("buffers", 5);
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

#[test]
fn a_steady_control_shows_no_growth_above_noise() {
    let (growth, _owners, _html) = growth_of("steady", 5);
    for s in growth["suspects"].as_array().expect("suspects") {
        let rise = s["stats"]["rise_bytes"].as_f64().expect("rise");
        assert!(
            rise <= NOISE_BYTES,
            "a suspect above noise in a steady program: {rise} bytes, {:?}",
            functions(s).iter().take(6).collect::<Vec<_>>()
        );
    }
}
