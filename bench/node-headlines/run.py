#!/usr/bin/env python3
"""The report's headline, as printed, for the Node.js HTTP client example and
for each issue-14 test (issue 14, "Must show").

    python3 bench/node-headlines/run.py [--seconds 60] [--every 10s] [--no-tests] [--no-example]

The example: examples/node-http-client/server.js (untraced) on loopback,
client.js for SECONDS under `leaktrail run --every EVERY` (full snapshots,
so the JS heap is read too), then `leaktrail report`: its first line.

The tests: runs the issue-14 integration tests with --nocapture (one
thread, `cargo test -j 1`); each prints `report headline [NAME]: ...` on
stderr as it reads its recording (crates/cli/tests/it/node.rs
`Recorded::of`, jsheap.rs, diagnosis.rs); this prints those lines and
whether each test passed.

Prints one `NAME: HEADLINE` line each. Needs `cargo build --workspace`
(release or debug: the release build is used when present).
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402

EXAMPLE = os.path.join(common.ROOT, "examples", "node-http-client")
# The integration tests that record a program and print its headline.
TESTS = [
    "node::issue_14_",
    "node::a_steady_control_shows_no_growth_above_noise",
    "node::native_leak_in_an_addon_is_ranked_first_with_its_js_caller",
    "jsheap::issue_14_",
    "diagnosis::issue_14_",
    "node_workloads::",
]
HEADLINE = re.compile(r"^report headline \[(.+?)\]: (.*)$")
# With --nocapture a test's "ok" comes after its output: read the summary.
SUMMARY = re.compile(r"^test result: .*$")
FAILED = re.compile(r"^    (\S+::\S+)$")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example(lt, seconds, every):
    with tempfile.TemporaryDirectory(prefix="leaktrail-headlines-") as tmp:
        port = free_port()
        server = subprocess.Popen(["node", os.path.join(EXAMPLE, "server.js"), str(port)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            # The server prints "listening" once it accepts connections.
            for line in server.stdout:
                if "listening" in line:
                    break
            rec = os.path.join(tmp, "rec")
            subprocess.run([lt, "run", "--every", every, "--out", rec, "--",
                            "node", os.path.join(EXAMPLE, "client.js"), "--port", str(port),
                            "--duration", str(seconds), "--report", str(seconds + 10)],
                           check=True, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out = subprocess.run([lt, "report", rec, "-o", os.path.join(tmp, "report.html")],
                                 check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True).stdout
            return out.splitlines()[0] if out else "(no headline)"
        finally:
            server.kill()
            server.wait()


def tests():
    cmd = ["cargo", "test", "-j", "1", "-p", "leaktrail", "--test", "it", "--"] + TESTS + [
        "--nocapture", "--test-threads", "1"]
    p = subprocess.run(cmd, cwd=common.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    rows, summary, failed = [], "no test summary", []
    for line in p.stdout.splitlines():
        m = HEADLINE.match(line)
        if m:
            rows.append((m.group(1), m.group(2)))
        if SUMMARY.match(line):
            summary = line
        m = FAILED.match(line)
        if m and m.group(1) not in failed:
            failed.append(m.group(1))
    return rows, summary, failed, p.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--every", default="10s")
    ap.add_argument("--leaktrail")
    ap.add_argument("--no-tests", action="store_true")
    ap.add_argument("--no-example", action="store_true")
    a = ap.parse_args()
    lt = common.leaktrail(a.leaktrail)
    if not a.no_example:
        print(f"examples/node-http-client ({a.seconds} s, --every {a.every}): "
              f"{example(lt, a.seconds, a.every)}", flush=True)
    if not a.no_tests:
        rows, summary, failed, rc = tests()
        for name, headline in rows:
            print(f"{name}: {headline}")
        print(summary + (f" (failed: {', '.join(failed)})" if failed else ""))
        if rc != 0:
            sys.exit(1)


if __name__ == "__main__":
    main()
