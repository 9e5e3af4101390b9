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

First (--pause-runs), the pause of a copy-on-write snapshot, a
stop-and-copy one and a gcore of the same service, interleaved, two ways:
from inside, the longest gap the service's event loop saw (service.js: a
1 ms timer's lateness), and leaktrail's own measure. Each run also
measures the event loop's longest gap over as long a window without any
snapshot (GC and the request loop): the baseline any pause stands on.

Usage: bench/snapshot/hourly_node.py [--mib 1024] [--rate 200] [--pause-runs 3] [--no-gcore]
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
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402

ROOT = common.ROOT


class Service(common.LineTarget):
    """service.js: answers 'r' and 'g' (its event loop's longest gap)
    between its once-a-minute "served" lines."""

    def ask(self, c):
        answer = super().ask(c)
        while answer.startswith("served "):
            answer = self.p.stdout.readline().strip()
        return answer

    def gap_ms(self):
        return int(self.ask("g").split()[1]) / 1e6


def snap(tool, pid, out, extra=()):
    r = subprocess.run([tool, "snapshot", "-p", str(pid), "-o", out, "-v", *extra],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"leaktrail failed: {r.stderr}")
    m = re.search(r"cost: .*?pause ([0-9.]+) ms", r.stdout)
    dc = re.search(r"with ([0-9.]+) MiB of MADV_DONTFORK memory", r.stdout)
    snap.dontfork_mib = float(dc.group(1)) if dc else 0.0
    snap.phases = next((l for l in r.stdout.splitlines() if l.startswith("phases:")), "")
    return os.path.getsize(out), float(m.group(1)) if m else float("nan")


def pauses(tool, node, args):
    """The pause of each method, from inside (the event loop) and by
    leaktrail's measure, interleaved; medians."""
    methods = ["cow", "stop"] + ([] if args.no_gcore else ["gcore"])
    inside = {m: [] for m in ["none"] + methods}
    ours = {"cow": [], "stop": []}
    dontfork, phases = [], []
    core = os.path.join(args.dir, "node-pause.core")
    for _ in range(args.pause_runs):
        window = 0.0
        for method in methods:
            assert node.ask("r") == "reset"
            started = time.monotonic()
            try:
                if method == "gcore":
                    r = subprocess.run(["gcore", "-o", core, str(node.pid)], capture_output=True,
                                       text=True)
                    if r.returncode != 0:
                        raise SystemExit(f"gcore failed: {r.stderr}")
                else:
                    ours[method].append(snap(tool, node.pid, core, ("--method", method))[1])
                    if method == "cow":
                        dontfork.append(snap.dontfork_mib)
                        phases.append((ours["cow"][-1], snap.phases))
            finally:
                for p in (core, f"{core}.{node.pid}"):
                    if os.path.exists(p):
                        os.unlink(p)
            window = max(window, time.monotonic() - started)
            inside[method].append(node.gap_ms())
        # The baseline: as long a window without a snapshot.
        assert node.ask("r") == "reset"
        time.sleep(window)
        inside["none"].append(node.gap_ms())
    med = {m: statistics.median(v) for m, v in inside.items()}
    c, s = (statistics.median(ours[m]) for m in ("cow", "stop"))
    print(f"pause, median of {args.pause_runs} runs (ms): inside = the longest gap in the service's event"
          " loop (a 1 ms timer's lateness); leaktrail = its own measure")
    print(f"  {'':>6} {'inside':>9} {'leaktrail':>10}")
    print(f"  {'none':>6} {med['none']:>9.1f} {'-':>10}   (no snapshot: GC and requests, the baseline)")
    print(f"  {'cow':>6} {med['cow']:>9.1f} {c:>10.1f}")
    print(f"  {'stop':>6} {med['stop']:>9.1f} {s:>10.1f}")
    if "gcore" in med:
        print(f"  {'gcore':>6} {med['gcore']:>9.1f} {'-':>10}")
    print(f"  stop/cow: inside {med['stop'] / med['cow']:.1f}x, leaktrail {s / c:.1f}x"
          + (f"; gcore/cow inside {med['gcore'] / med['cow']:.1f}x" if "gcore" in med else ""))
    print(f"  V8's MADV_DONTFORK heap in the image: {statistics.median(dontfork):.0f} MiB"
          " (copied from it after the release)")
    # Where the pause went, in the cow run of median pause.
    print(f"  cow, the median run's {sorted(phases)[len(phases) // 2][1]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rate", type=int, default=200, help="requests per second")
    ap.add_argument("--intervals", default="30,120,600", help="seconds between snapshots, in order")
    ap.add_argument("--pause-runs", type=int, default=3,
                    help="first, this many cow, stop and gcore snapshots, interleaved: their pauses")
    ap.add_argument("--dir", default=os.path.join(ROOT, "target", "bench-snapshot"))
    ap.add_argument("--leaktrail", default=None)
    ap.add_argument("--no-gcore", action="store_true", help="leave gcore out of the pause runs")
    args = ap.parse_args()
    tool = common.leaktrail(args.leaktrail)
    os.makedirs(args.dir, exist_ok=True)
    node = Service(["node", "--max-old-space-size=4096", os.path.join(HERE, "service.js"),
                    str(args.mib), str(args.rate)], "service")
    pid, rss = node.pid, int(node.ready.split()[2])
    print(f"leaktrail: {tool}; service pid {pid}, {rss} MiB resident, {args.rate} requests/s")
    mib = 2**20
    chain = [os.path.join(args.dir, "node-h0.core")]
    rows = []
    try:
        if args.pause_runs:
            pauses(tool, node, args)
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
        node.close()
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
