//! Node.js programs unlike the fixtures the Node views were built on
//! (issue 14: workloads we did not write for the tool),
//! `fixtures/node/workloads.js`: listeners that pile up on an
//! EventEmitter, a Map cache that never evicts, Buffers kept in an array
//! from a function TurboFan optimizes (recorded by hand, not yet a test:
//! see docs/ARCHITECTURE.md), and a steady HTTP server and client on
//! loopback. Each is recorded under the tracer, snapshotted after each
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
