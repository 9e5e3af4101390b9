#!/usr/bin/env python3
"""Snapshot pause per GiB captured: leaktrail snapshot vs gdb's gcore.

Starts bench/snapshot/touch.c with N MiB of touched heap, then, several
times each, takes a `leaktrail snapshot --memory full` and a `gcore` of the
same process. The pause is measured from inside the target (its ticker
thread's longest gap between 1 ms wake-ups), the same way for both tools;
leaktrail's own report of its pause is printed beside it. Medians per size,
per GiB of core, and the ratio.

Usage: bench/snapshot/run.py [--sizes 100,1024,4096] [--runs 5]
                              [--dir DIR] [--leaktrail PATH]

Cores go to DIR (default: target/bench-snapshot under the repository) and
are deleted after each run. Needs gcc, gdb (gcore), and a built leaktrail
(release recommended: cargo build --release -p leaktrail).
"""

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402

ROOT = common.ROOT


def leaktrail_run(tool, t, out):
    t.reset()
    start = time.monotonic()
    r = subprocess.run([tool, "snapshot", "-p", str(t.pid), "-o", out],
                       capture_output=True, text=True)
    wall = time.monotonic() - start
    if r.returncode != 0:
        raise SystemExit(f"leaktrail failed: {r.stderr}")
    m = re.search(r"pause ([0-9.]+) ms", r.stdout)
    reported = float(m.group(1)) / 1e3 if m else float("nan")
    size = os.path.getsize(out)
    gap = t.gap_ns() / 1e9
    os.unlink(out)
    return {"gap": gap, "reported": reported, "wall": wall, "bytes": size}


def gcore_run(t, prefix):
    t.reset()
    start = time.monotonic()
    r = subprocess.run(["gcore", "-o", prefix, str(t.pid)],
                       capture_output=True, text=True)
    wall = time.monotonic() - start
    path = f"{prefix}.{t.pid}"
    if r.returncode != 0 or not os.path.exists(path):
        raise SystemExit(f"gcore failed: {r.stderr}")
    size = os.path.getsize(path)
    gap = t.gap_ns() / 1e9
    os.unlink(path)
    return {"gap": gap, "wall": wall, "bytes": size}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100,1024,4096",
                    help="touched heap sizes in MiB, comma-separated")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default=os.path.join(ROOT, "target", "bench-snapshot"))
    ap.add_argument("--leaktrail", default=None)
    args = ap.parse_args()

    tool, exe = common.touch_bench(args)

    print(f"leaktrail: {tool}")
    print(f"cores in:  {args.dir}; {args.runs} runs per size and tool; medians\n")
    header = (f"{'heap':>8} | {'leaktrail pause':>15} {'(self-report)':>13} {'core':>9} {'s/GiB':>7} |"
              f" {'gcore pause':>11} {'core':>9} {'s/GiB':>7} | {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for mib in [int(s) for s in args.sizes.split(",")]:
        t = common.TouchTarget([exe, str(mib)], "touch")
        try:
            lt, gc = [], []
            for i in range(args.runs):
                lt.append(leaktrail_run(tool, t, os.path.join(args.dir, "lt.core")))
                gc.append(gcore_run(t, os.path.join(args.dir, "gc")))
        finally:
            t.close()
        gib_lt = common.med(lt, "bytes") / 2**30
        gib_gc = common.med(gc, "bytes") / 2**30
        lt_gap, gc_gap = common.med(lt, "gap"), common.med(gc, "gap")
        print(f"{mib:>5} MiB | {lt_gap:>13.3f} s {common.med(lt, 'reported'):>11.3f} s {gib_lt:>5.2f} GiB"
              f" {lt_gap / gib_lt:>7.3f} | {gc_gap:>9.3f} s {gib_gc:>5.2f} GiB {gc_gap / gib_gc:>7.3f} |"
              f" {gc_gap / lt_gap:>5.1f}x", flush=True)
        best_lt = min(r["gap"] for r in lt)
        best_gc = min(r["gap"] for r in gc)
        print(f"{'(best)':>9} | {best_lt:>13.3f} s {'':>13} {'':>9} {best_lt / gib_lt:>7.3f} |"
              f" {best_gc:>9.3f} s {'':>9} {best_gc / gib_gc:>7.3f} | {best_gc / best_lt:>5.1f}x",
              flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
          " (other work on the machine stretches both tools' pauses)")
    print("ratio = gcore pause / leaktrail pause (higher is better for leaktrail).")
    print("target: leaktrail <= 0.3 s per GiB captured.")


if __name__ == "__main__":
    sys.exit(main())
