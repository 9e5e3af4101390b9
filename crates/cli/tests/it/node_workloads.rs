//! Node.js programs unlike the fixtures the Node views were built on
//! (issue 14: workloads we did not write for the tool),
//! `fixtures/node/workloads.js`: listeners that pile up on an
//! EventEmitter, a Map cache that never evicts, Buffers kept in an array
//! from a function TurboFan optimizes, and a steady HTTP server and
//! client on loopback. Each is recorded under the tracer, snapshotted after each
//! step, and every view must name the same culprit (or nothing): the
//! report's headline and diagnosis, `growth`'s text and JSON, `trend`'s
//! growing owner.

use serde_json::Value;

use crate::node::{record_with, Culprit, Recorded};
use crate::support::repo_root;

const STEPS: usize = 5;

/// Records `workloads.js SCENARIO` for `steps` steps, snapshots of
/// `memory`.
fn workload(scenario: &str, memory: &str, steps: usize) -> Recorded {
    let script = repo_root().join("fixtures/node/workloads.js");
    record_with(
        &format!("workload_{scenario}"),
        memory,
        &[
            "--expose-gc".as_ref(),
            script.as_os_str(),
            scenario.as_ref(),
        ],
        steps,
    )
}

/// The JS heap's entry for `constructor` in `growth --json`: (count
/// gained, grows steadily).
fn js_gain(growth: &Value, constructor: &str) -> (i64, bool) {
    growth["js_heap"]["constructors"]
        .as_array()
        .expect("js_heap constructors")
        .iter()
        .find(|c| c["constructor"] == constructor)
        .map(|c| {
            (
                c["count_delta"].as_i64().unwrap(),
                c["grows_steadily"] == true,
            )
        })
        .unwrap_or((0, false))
}

#[test]
fn issue_14_a_map_cache_that_never_evicts_is_a_js_heap_leak() {
    let r = workload("cache", "full", STEPS);
    assert_eq!(
        js_gain(&r.growth, "Session"),
        (3000 * (STEPS as i64 - 1), true)
    );
    r.assert_every_view_names(Culprit::JsHeap("Session"));
}

#[test]
fn issue_14_a_steady_http_server_and_client_show_no_growth_above_noise() {
    let r = workload("http", "full", 6);
    assert_ne!(
        r.growth["js_heap"]["verdict"], "leak",
        "{:#}",
        r.growth["js_heap"]
    );
    r.assert_every_view_names(Culprit::Nothing);
}

/// 16 KiB Buffers kept from `receive`, which TurboFan optimizes mid-run
/// and into which it inlines Node's Buffer code: V8 wrote the inlined
/// position's script as garbage of the user script's length, once shown
/// as a function of the user script at a line past its end, which split
/// the leak into an interpreted and an optimized suspect. It is one
/// suspect, named `receive`, that holds the kept buffers.
#[test]
fn issue_14_buffers_kept_from_an_optimized_function_are_one_suspect() {
    let steps = 6;
    let r = workload("buffers", "full", steps);
    let suspects = r.growth["suspects"].as_array().expect("suspects");
    let count = |s: &Value, i: usize| s["series"][i]["count"].as_i64().unwrap_or(0);
    // The buffers' 16 KiB class (each also has a 64 B BackingStore).
    let through_receive: Vec<&Value> = suspects
        .iter()
        .filter(|s| s["class"] == 16384)
        .filter(|s| {
            s["stack"]
                .as_array()
                .is_some_and(|st| st.iter().any(|f| f["function"] == "receive"))
        })
        .collect();
    let top = through_receive.first().expect("a suspect through receive");
    // 250 kept a step (one in four of 1,000 made), in one suspect.
    let gained = count(top, steps - 1) - count(top, 0);
    assert!(
        gained >= 250 * (steps as i64 - 1),
        "the top suspect through receive gained {gained}: {top:#}"
    );
    for other in &through_receive[1..] {
        let g = count(other, steps - 1) - count(other, 0);
        assert!(
            g < 100,
            "a second suspect through receive gained {g}: {other:#}"
        );
    }
    for f in top["stack"].as_array().expect("stack") {
        let line = f["line"].as_u64().unwrap_or(0);
        let file = f["file"].as_str().unwrap_or("");
        assert!(
            !(file.ends_with("workloads.js") && line > 140),
            "a frame past the end of workloads.js: {f:#}"
        );
    }
    r.assert_every_view_names(Culprit::Site("receive", "array_buffers"));
}
