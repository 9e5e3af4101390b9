#!/usr/bin/env python3
"""Bytes written per hour by periodic snapshots of a Node.js service, full vs
incremental, measured on a real V8 heap (its scavenges and compactions
rewrite pages the program never touched itself).

Starts bench/snapshot/service.js (about --mib MiB resident, --rate
requests per second, forever), takes a full base snapshot, then, after
each interval in --intervals (seconds, in order), one full snapshot and
one incremental to the previous incremental (`--since`, the chain a
recording keeps). The incremental's file is what that interval's pages
changed cost; the full one is what a snapshot costs without it.

Prints, per interval, both sizes; and per hour at the longest interval:
3600 / interval snapshots of each kind, plus, for incremental, one full
base per chain (a recording's --full-every; here one per hour). With
--intervals 600 the 10-minute figure is measured, not estimated; shorter
intervals show how the changed set grows with the interval (it
saturates: V8 rewrites the same young space again and again).

First (--pause-runs), the pause of a copy-on-write and a stop-and-copy
snapshot of the same service, interleaved, as leaktrail measures it.

Usage: bench/snapshot/hourly_node.py [--mib 1024] [--rate 200] [--pause-runs 3]
                                     [--intervals 30,120,600] [--dir DIR]
       (--intervals '' measures the pauses only)
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def snap(tool, pid, out, extra=()):
    r = subprocess.run([tool, "snapshot", "-p", str(pid), "-o", out, "-v", *extra],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"leaktrail failed: {r.stderr}")
    m = re.search(r"cost: .*?pause ([0-9.]+) ms", r.stdout)
    dc = re.search(r"with ([0-9.]+) MiB of MADV_DONTFORK memory", r.stdout)
    snap.dontfork_mib = float(dc.group(1)) if dc else 0.0
    return os.path.getsize(out), float(m.group(1)) if m else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rate", type=int, default=200, help="requests per second")
    ap.add_argument("--intervals", default="30,120,600", help="seconds between snapshots, in order")
    ap.add_argument("--pause-runs", type=int, default=3,
                    help="first, this many cow and stop snapshots, interleaved: their pauses")
    ap.add_argument("--dir", default=os.path.join(ROOT, "target", "bench-snapshot"))
    ap.add_argument("--leaktrail", default=None)
    args = ap.parse_args()
    tool = args.leaktrail or next((p for p in (os.path.join(ROOT, "target", c, "leaktrail")
                                              for c in ("release", "debug")) if os.path.exists(p)), None)
    if tool is None:
        raise SystemExit("build leaktrail first: cargo build --release -p leaktrail")
    os.makedirs(args.dir, exist_ok=True)
    node = subprocess.Popen(["node", "--max-old-space-size=4096", os.path.join(HERE, "service.js"),
                             str(args.mib), str(args.rate)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = node.stdout.readline()
    if not line.startswith("ready "):
        raise SystemExit(f"service did not start: {line!r}")
    pid, rss = int(line.split()[1]), int(line.split()[2])
    print(f"leaktrail: {tool}; service pid {pid}, {rss} MiB resident, {args.rate} requests/s")
    mib = 2**20
    chain = [os.path.join(args.dir, "node-h0.core")]
    try:
        if args.pause_runs:
            pauses = {"cow": [], "stop": []}
            dontfork = []
            for _ in range(args.pause_runs):
                for method in pauses:
                    p = os.path.join(args.dir, "node-pause.core")
                    pauses[method].append(snap(tool, pid, p, ("--method", method))[1])
                    if method == "cow":
                        dontfork.append(snap.dontfork_mib)
                    os.unlink(p)
            c, s = (statistics.median(pauses[m]) for m in ("cow", "stop"))
            print(f"pause (leaktrail's measure), median of {args.pause_runs}: cow {c:.1f} ms,"
                  f" stop {s:.1f} ms, stop/cow {s / c:.1f}x (V8's MADV_DONTFORK heap in the image:"
                  f" {statistics.median(dontfork):.0f} MiB, copied after the release)")
        if not args.intervals:
            return
        base, _ = snap(tool, pid, chain[0])
        print(f"base (full): {base / mib:.0f} MiB\n")
        print(f"{'interval':>9} | {'full':>9} | {'incremental':>11} | {'full/inc':>8} | {'cow pause':>9}")
        rows = []
        for i, secs in enumerate(int(s) for s in args.intervals.split(",")):
            time.sleep(secs)
            full = os.path.join(args.dir, "node-full.core")
            f, pause = snap(tool, pid, full)
            os.unlink(full)
            chain.append(os.path.join(args.dir, f"node-h{i + 1}.core"))
            inc, _ = snap(tool, pid, chain[-1], ("--since", chain[-2]))
            rows.append((secs, f, inc))
            print(f"{secs:>8}s | {f / mib:>5.0f} MiB | {inc / mib:>7.1f} MiB | {f / inc:>7.1f}x |"
                  f" {pause:>6.1f} ms", flush=True)
    finally:
        node.stdin.write("q")
        node.stdin.flush()
        node.wait(timeout=60)
        for p in chain:
            if os.path.exists(p):
                os.unlink(p)
    secs, f, inc = rows[-1]
    per_hour = 3600 / secs
    gib = 2**30
    print(f"\nper hour at one snapshot every {secs} s ({per_hour:.0f} snapshots):")
    print(f"  full:        {per_hour * f / gib:>6.2f} GiB")
    print(f"  incremental: {(per_hour - 1) * inc / gib + f / gib:>6.2f} GiB"
          f" ({per_hour - 1:.0f} incremental + one full base);"
          f" {per_hour * inc / gib:.2f} GiB without the base")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    sys.exit(main())
