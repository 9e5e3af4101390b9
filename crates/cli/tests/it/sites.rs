//! heaptrack's numbers per allocation site (issue 17, item 3): what the
//! tracer counts per site, as `summary`, `growth`, `pprof` and the report
//! show it, against `fixtures/sitestats.c`, whose every count is known by
//! construction, and against heaptrack_print on the same binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

use crate::support::{fixture, functions, leaktrail, leaktrail_json, scratch, stdout, success};

/// What the fixture does at one site.
struct Expected {
    function: &'static str,
    allocs: u64,
    frees: u64,
    temporary: u64,
    peak: u64,
    /// Live bytes at exit.
    live: u64,
    /// (bucket bound, allocations).
    sizes: &'static [(u64, u64)],
}

const SITES: &[Expected] = &[
    Expected {
        function: "temporaries",
        allocs: 300,
        frees: 300,
        temporary: 300,
        peak: 64,
        live: 0,
        sizes: &[(64, 300)],
    },
    Expected {
        function: "hold",
        allocs: 200,
        frees: 200,
        temporary: 0,
        peak: 200_000,
        live: 0,
        sizes: &[(1024, 200)],
    },
    Expected {
        function: "leak_some",
        allocs: 50,
        frees: 20,
        temporary: 0,
        peak: 150_000,
        live: 90_000,
        sizes: &[(4096, 50)],
    },
    Expected {
        function: "keep_sizes",
        allocs: 5,
        frees: 0,
        temporary: 0,
        peak: 9137,
        live: 9137,
        sizes: &[(8, 1), (16, 1), (32, 1), (4096, 1), (8192, 1)],
    },
];

/// The fixture's binary (frame pointers kept, so every tool unwinds it).
fn program() -> PathBuf {
    fixture("sitestats", &["-fno-omit-frame-pointer"])
}

/// One recording of the fixture run to its end, shared by the tests.
fn recording() -> PathBuf {
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut dir = DIR.lock().unwrap_or_else(|p| p.into_inner());
    dir.get_or_insert_with(|| {
        let rec = scratch("sites").join("rec");
        success(
            leaktrail()
                .args(["run", "--every", "0", "--out"])
                .arg(&rec)
                .arg("--")
                .arg(program()),
        );
        rec
    })
    .clone()
}

/// The site of `summary --json` whose allocating frame is `function`.
fn site<'a>(doc: &'a Value, function: &str) -> &'a Value {
    let found: Vec<&Value> = doc["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .filter(|s| functions(&s["stack"]).first().map(String::as_str) == Some(function))
        .collect();
    assert_eq!(found.len(), 1, "one site allocates in {function}: {doc:#}");
    found[0]
}

#[test]
fn issue_17_summary_counts_each_site_exactly() {
    let doc = leaktrail_json([
        "summary".as_ref(),
        "--json".as_ref(),
        recording().as_os_str(),
    ]);
    for e in SITES {
        let (f, s) = (e.function, site(&doc, e.function));
        assert_eq!(s["allocations"], e.allocs, "{f}");
        assert_eq!(s["frees"], e.frees, "{f}");
        assert_eq!(s["temporary"], e.temporary, "{f}");
        assert_eq!(s["peak_bytes"], e.peak, "{f}");
        assert_eq!(s["live_bytes"], e.live, "{f}");
        assert_eq!(s["live_count"], e.allocs - e.frees, "{f}");
        let got: Vec<(u64, u64)> = s["sizes"]
            .as_array()
            .expect("sizes")
            .iter()
            .map(|b| {
                (
                    b["max_size"].as_u64().expect("bounded"),
                    b["count"].as_u64().expect("count"),
                )
            })
            .collect();
        assert_eq!(got, e.sizes, "{f}");
    }
    // Nothing else in the program allocates: the totals are the sites'.
    let t = &doc["totals"];
    assert_eq!(t["allocations"], 555);
    assert_eq!(t["temporary"], 300);
    assert_eq!(t["peak_bytes"], 9137 + 150_000 + 200_000 + 64);
    assert_eq!(t["leaked_bytes"], 90_000 + 9137);
    assert_eq!(t["leaked_blocks"], 30 + 5);
    let first =
        |list: &str| doc["sites"][doc[list][0].as_u64().expect("index") as usize]["stack"].clone();
    assert_eq!(functions(&first("by_allocations"))[0], "temporaries");
    assert_eq!(functions(&first("by_peak"))[0], "hold");
    assert_eq!(functions(&first("by_temporary"))[0], "temporaries");
    assert_eq!(doc["by_temporary"].as_array().map(Vec::len), Some(1));

    // The text is heaptrack_print's, section for section.
    let text = stdout(leaktrail().args(["summary", "--top", "2"]).arg(recording()));
    for line in [
        "MOST CALLS TO ALLOCATION FUNCTIONS\n300 calls to allocation functions with 64B peak consumption from\ntemporaries\n",
        "PEAK MEMORY CONSUMERS\n200.00K peak memory consumed over 200 calls from\nhold\n",
        "MOST TEMPORARY ALLOCATIONS\n300 temporary allocations of 300 allocations in total (100.00%) from\ntemporaries\n",
        "calls to allocation functions: 555 (",
        "temporary memory allocations: 300 (",
        "peak heap memory consumption: 359.20K after ",
        "total memory leaked: 99.14K in 35 blocks",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    assert!(
        !text.contains("\nkeep_sizes\n  at"),
        "--top 2 lists two sites a section:\n{text}"
    );
}

/// Bytes of a heaptrack_print size (`64B`, `200.00K`, `9.14K`) and the
/// most its rounding can be off by.
fn heaptrack_size(s: &str) -> (f64, f64) {
    let (digits, unit) = s.split_at(s.len() - 1);
    let scale = match unit {
        "B" => return (digits.parse().expect("bytes"), 0.0),
        "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        _ => panic!("unit of {s}"),
    };
    (
        digits.parse::<f64>().expect("number") * scale,
        0.005 * scale,
    )
}

/// heaptrack_print's numbers per top frame: allocations, temporary
/// allocations, peak and leaked bytes (the last two with their rounding).
#[derive(Debug, Default)]
struct Heaptrack {
    allocations: u64,
    temporary: u64,
    peak: (f64, f64),
    leaked: (f64, f64),
}

fn heaptrack_print(data: &Path) -> BTreeMap<String, Heaptrack> {
    let out = Command::new("heaptrack_print")
        .args(["-a", "-p", "-T", "-l", "-n", "20", "-f"])
        .arg(data)
        .output()
        .expect("heaptrack_print (installed by .ci/run)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut sites: BTreeMap<String, Heaptrack> = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        // Each entry's header line ends in "from"; the next names the frame.
        let Some(function) = lines.get(i + 1).filter(|_| line.ends_with(" from")) else {
            continue;
        };
        let e = sites.entry(function.to_string()).or_default();
        let w: Vec<&str> = line.split_whitespace().collect();
        if line.contains("calls to allocation functions with") {
            e.allocations = w[0].parse().expect("calls");
        } else if line.contains("peak memory consumed over") {
            e.peak = heaptrack_size(w[0]);
        } else if line.contains("temporary allocations of") {
            e.temporary = w[0].parse().expect("temporary");
        } else if line.contains("leaked over") {
            e.leaked = heaptrack_size(w[0]);
        }
    }
    sites
}

#[test]
fn issue_17_summary_agrees_with_heaptrack_print() {
    let work = scratch("sites_heaptrack");
    let data = work.join("ht");
    let run = Command::new("heaptrack")
        .arg("-o")
        .arg(&data)
        .arg(program())
        .output()
        .expect("heaptrack (installed by .ci/run)");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let written = std::fs::read_dir(&work)
        .expect("work")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ht."))
        })
        .expect("heaptrack's data file");
    let theirs = heaptrack_print(&written);
    let ours = leaktrail_json([
        "summary".as_ref(),
        "--json".as_ref(),
        recording().as_os_str(),
    ]);
    for f in SITES.iter().map(|e| e.function) {
        let h = theirs
            .get(f)
            .unwrap_or_else(|| panic!("heaptrack lists {f}: {theirs:?}"));
        let s = site(&ours, f);
        let n = |k: &str| s[k].as_u64().expect(k);
        assert_eq!(n("allocations"), h.allocations, "{f}: calls");
        assert_eq!(n("temporary"), h.temporary, "{f}: temporary");
        // Every site is at its own peak at the process's peak, where
        // heaptrack takes a site's peak: the same quantity here.
        assert!(
            (n("peak_bytes") as f64 - h.peak.0).abs() <= h.peak.1,
            "{f}: peak {h:?}"
        );
        assert!(
            (n("live_bytes") as f64 - h.leaked.0).abs() <= h.leaked.1,
            "{f}: leaked {h:?}"
        );
    }
}

#[test]
fn issue_17_pprof_has_alloc_objects_and_alloc_space_per_site() {
    let snap = recording().join("snapshots/0001-exit.core");
    let out = scratch("sites_pprof").join("heap.pb.gz");
    stdout(leaktrail().arg("pprof").arg(&snap).arg("-o").arg(&out));
    let p: Value = serde_json::from_str(&stdout(
        Command::new("python3")
            .arg(crate::support::repo_root().join("crates/cli/tests/it/pprof_decode.py"))
            .arg(&out),
    ))
    .expect("decoder json");
    assert_eq!(
        p["sample_types"][2],
        serde_json::json!(["alloc_objects", "count"])
    );
    assert_eq!(
        p["sample_types"][3],
        serde_json::json!(["alloc_space", "bytes"])
    );
    assert_eq!(p["default_sample_type"], "inuse_space");
    // inuse: what is live at exit; alloc: everything the program allocated.
    assert_eq!(
        p["totals"],
        serde_json::json!([35, 99_137, 555, 19_200 + 200_000 + 150_000 + 9137])
    );
    let values = |function: &str| -> Vec<Value> {
        crate::support::allocated_in(&p, "samples", function)
            .map(|s| s["values"].clone())
            .collect()
    };
    // All freed: no inuse sample, one alloc sample.
    assert_eq!(
        values("temporaries"),
        [serde_json::json!([0, 0, 300, 19_200])]
    );
    assert_eq!(
        values("leak_some"),
        [
            serde_json::json!([30, 90_000, 0, 0]),
            serde_json::json!([0, 0, 50, 150_000])
        ]
    );
}

#[test]
fn issue_17_growth_suspects_carry_their_sites_counts() {
    use crate::growth::{shared_recording, GROW_STEP_BYTES, STEPS};
    let doc = leaktrail_json([
        "growth".as_ref(),
        "--json".as_ref(),
        shared_recording().as_os_str(),
    ]);
    let top = &doc["suspects"][0];
    assert_eq!(functions(&top["stack"])[0], "grow_cache");
    // Kept forever: 100 allocations a step, never freed, the peak now.
    let site = &top["site"];
    assert_eq!(site["allocations"], 100 * STEPS as u64);
    assert_eq!(
        (site["frees"].as_u64(), site["temporary"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(site["peak_bytes"], STEPS as u64 * GROW_STEP_BYTES);
    assert_eq!(site["live_bytes"], STEPS as u64 * GROW_STEP_BYTES);
    let text = stdout(leaktrail().arg("growth").arg(shared_recording()));
    let line = format!(
        "   site: {} allocations, 0 freed, 0 temporary, peak ",
        100 * STEPS
    );
    assert!(text.contains(&line), "{line:?} in\n{text}");
    // The size histogram ends the line: every allocation 4096 B.
    let sizes = format!("; sizes ≤4.0 KiB ×{}\n", 100 * STEPS);
    assert!(text.contains(&sizes), "{sizes:?} in\n{text}");
    // The report's suspect says the same, word for word.
    let page = scratch("sites_report").join("report.html");
    success(
        leaktrail()
            .arg("report")
            .arg(shared_recording())
            .arg("-o")
            .arg(&page),
    );
    let html = std::fs::read_to_string(&page).expect("report.html");
    let said = text
        .lines()
        .find(|l| l.starts_with("   site: "))
        .expect("growth's site line")
        .trim_start()
        .replace('>', "&gt;")
        .replace('<', "&lt;");
    assert!(
        html.contains(&format!("<div class=\"muted site-counts\">{said}</div>")),
        "{said:?} in the report"
    );
}
