#!/usr/bin/env python3
"""Node.js HTTP client overhead: untraced vs leaktrail vs heaptrack, same run.

    python3 bench/node-http/run.py [--runs 3] [--duration 60] [--rate 400]

Starts examples/node-http-client/server.js (untraced) on loopback, then runs
examples/node-http-client/client.js at RATE requests per second for DURATION
seconds under each configuration, interleaved, RUNS times. For each run it
takes the CPU time (user + system) of the client and everything the
configuration started (the tracer's supervisor, heaptrack's interpreter),
from getrusage(RUSAGE_CHILDREN), and the requests completed; it prints
medians of CPU time per request and of achieved throughput.

"leaktrail-sampled" is `run --sample 512KiB` (--sample to change it).
`leaktrail run` adds --perf-basic-prof --perf-prof
--interpreted-frames-native-stack to node's command line (to name JS
frames), which cost CPU of their own: "untraced-flags" is the client
untraced with those flags, so the tracer's own share (over
untraced-flags) and the flags' share (untraced-flags over untraced) are
printed apart.

Targets: leaktrail's added CPU per request at most half of heaptrack's
(issue 7); sampled at 512 KiB, at most 2% more CPU than untraced at
400 req/s (issue 13).
"""
import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "node-http-client")
LEAKTRAIL = os.path.join(ROOT, "target", "release", "leaktrail")
# Mean bytes between samples of "leaktrail-sampled" (--sample).
SAMPLE = "512KiB"


# What `leaktrail run` adds to a node command line (capture::node::SYMBOL_FLAGS).
NODE_FLAGS = ["--perf-basic-prof", "--perf-prof", "--interpreted-frames-native-stack"]


def wrap(config, argv, tmp):
    if config == "untraced":
        return argv
    if config == "untraced-flags":
        return argv[:1] + NODE_FLAGS + argv[1:]
    if config == "leaktrail":
        return [LEAKTRAIL, "run", "--no-record", "--"] + argv
    if config == "leaktrail-sampled":
        return [LEAKTRAIL, "run", "--no-record", "--sample", SAMPLE, "--"] + argv
    if config == "heaptrack":
        return ["heaptrack", "-o", os.path.join(tmp, "heaptrack.out")] + argv
    raise ValueError(config)


def one_run(config, port, args, tmp):
    argv = ["node", os.path.join(EXAMPLE, "client.js"), "--port", str(port), "--rate", str(args.rate),
            "--duration", str(args.duration), "--report", str(args.duration + 10)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    p = subprocess.Popen(wrap(config, argv, tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp)
    stdout, stderr = p.communicate()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{config} failed ({p.returncode}):\n{stderr.decode()[-2000:]}")
    # heaptrack prints its own summary on stdout too: take the client's
    # last report line.
    reports = re.findall(r"done=(\d+)", stdout.decode())
    if not reports:
        sys.exit(f"{config}: the client printed no report:\n{stdout.decode()[-2000:]}")
    done = int(reports[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # What heaptrack and node's flags leave behind (leaktrail run removes
    # its own).
    for f in os.listdir(tmp):
        if f.startswith("heaptrack.out") or f.startswith("jit-"):
            os.remove(os.path.join(tmp, f))
    try:
        os.remove(f"/tmp/perf-{p.pid}.map")
    except OSError:
        pass
    return cpu / max(done, 1), done / wall


def main():
    global SAMPLE, LEAKTRAIL
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--rate", type=int, default=400)
    ap.add_argument("--port", type=int, default=18123)
    ap.add_argument("--no-build", action="store_true", help="use the release build already in target/")
    ap.add_argument("--sample", default=SAMPLE, help="rate of the sampled configuration")
    ap.add_argument("--leaktrail", metavar="PATH",
                    help="the leaktrail binary to measure (implies --no-build); default target/release/leaktrail")
    args = ap.parse_args()
    SAMPLE = args.sample
    if args.leaktrail:
        LEAKTRAIL = os.path.abspath(args.leaktrail)
        args.no_build = True
    if not shutil.which("heaptrack"):
        sys.exit("heaptrack is not installed (apt-get install heaptrack)")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--workspace", "--quiet"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="leaktrail-node-bench-")
    server = subprocess.Popen(["node", os.path.join(EXAMPLE, "server.js"), str(args.port)],
                              stdout=subprocess.PIPE)
    try:
        server.stdout.readline()  # "listening on PORT"
        configs = ["untraced", "untraced-flags", "leaktrail", "leaktrail-sampled", "heaptrack"]
        cpu = {c: [] for c in configs}
        rate = {c: [] for c in configs}
        for _ in range(args.runs):
            for c in configs:
                per_req, rps = one_run(c, args.port, args, tmp)
                cpu[c].append(per_req)
                rate[c].append(rps)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"node HTTP client, {args.rate} req/s for {args.duration} s, median of {args.runs} runs")
    print(f"{'config':18} {'CPU us/req':>11} {'x untraced':>10} {'req/s':>8}")
    base = statistics.median(cpu["untraced"])
    med = {c: statistics.median(cpu[c]) for c in cpu}
    for c in cpu:
        print(f"{c:18} {med[c] * 1e6:11.1f} {med[c] / base:10.2f} {statistics.median(rate[c]):8.1f}")
    flags = med["untraced-flags"]
    print(f"the node flags alone add {(flags / base - 1) * 100:.1f}% CPU per request")
    added_lt = med["leaktrail"] - base
    added_ht = med["heaptrack"] - base
    ratio = added_lt / added_ht if added_ht > 0 else float("inf")
    rows = [("full audit added CPU <= 1/2 of heaptrack's (issue 7)", "over untraced", f"{ratio:.2f}",
             ratio <= 0.5)]
    for over, b in [("over untraced", base), ("over untraced-flags (the tracer's share)", flags)]:
        s = med["leaktrail-sampled"] / b - 1
        rows.append((f"sampled at {SAMPLE} <= 2% CPU (issue 13)", over, f"{s * 100:+.1f}%", s <= 0.02))
    print()
    print(f"summary (node HTTP client at {args.rate} req/s; medians of {args.runs} runs, baselines in the same run)")
    for target, over, figure, met in rows:
        print(f"  {target:46}  {over:40}  {figure:>8}  {'met' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
