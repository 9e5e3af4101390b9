#!/usr/bin/env python3
"""Wall time of `leaktrail run -- /bin/true` against untraced `/bin/true`.

Issue 13 asks that a trivial program under `run` (recording and exit
snapshot included) finish within 0.1 s of its own time. Each round runs
`/bin/true` untraced, then under `leaktrail run` with a fresh recording
directory (the default: a watch series, the exit snapshot with --memory
full), then under `leaktrail run --no-record`; the order is the same every
round so a loaded machine hurts all three alike. Prints the medians and the
overhead over untraced.

Usage: bench/run-latency/run.py [--runs 21] [--interval 1s]
                                 [--leaktrail PATH] [--dir DIR]

Needs a built leaktrail (release recommended: cargo build --release -p
leaktrail -p leaktrail-preload; the debug build works too).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402

ROOT = common.ROOT


def timed(argv):
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--interval", default="1s")
    ap.add_argument("--leaktrail", default=None)
    ap.add_argument("--dir", default=os.path.join(ROOT, "target", "bench-run-latency"))
    args = ap.parse_args()
    lt = common.leaktrail(args.leaktrail)
    os.makedirs(args.dir, exist_ok=True)
    plain, recorded, traced = [], [], []
    for i in range(args.runs):
        plain.append(timed(["/bin/true"]))
        out = os.path.join(args.dir, f"rec-{i}")
        shutil.rmtree(out, ignore_errors=True)
        recorded.append(timed([lt, "run", "--interval", args.interval,
                               "--out", out, "--", "/bin/true"]))
        shutil.rmtree(out, ignore_errors=True)
        traced.append(timed([lt, "run", "--no-record", "--", "/bin/true"]))
    base = statistics.median(plain)
    print(f"{args.runs} runs, {lt}, --interval {args.interval}")
    for name, xs in (("untraced /bin/true", plain),
                     ("run -- /bin/true (recorded)", recorded),
                     ("run --no-record -- /bin/true", traced)):
        m = statistics.median(xs)
        print(f"  {name:<30} median {m * 1000:8.1f} ms"
              f"  (min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f})"
              f"  over untraced {(m - base) * 1000:+8.1f} ms")


if __name__ == "__main__":
    main()
