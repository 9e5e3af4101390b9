#!/usr/bin/env python3
"""The glibc heap walker's speed on a big heap of an untraced process.

Builds bench/findleaks/heap.c (BLOCKS live buffers of 64..800 bytes, 10 M
make about 4 GiB, 1% leaked), runs it WITHOUT the tracer, snapshots it with
`leaktrail snapshot -p PID` and times, several times each (medians):

* `leaktrail info --json`: opening the core and walking glibc's heap
  (every arena, tcache, fastbins, bins, mmapped chunks); it must find
  exactly BLOCKS chunks in use plus heap.c's head array and stdout's
  buffer;
* the baseline, in the same run: reading the same core once, sequentially,
  from the page cache (`cat core > /dev/null`), which is the least any
  analysis of the whole heap costs;
* `leaktrail leaks --json` on the walked heap (walk, types and
  reachability), with its definitely/indirectly lost counts checked.

Prints chunks per second and the ratio of the walk to the baseline.

Usage: bench/walker/run.py [--blocks 10000000] [--runs 5] [--dir DIR]
                           [--leaktrail PATH] [--keep]

Needs gcc and a release leaktrail (cargo build --release -p leaktrail). The
core is about 1.1x the heap: check free disk first (df -h); it is deleted at
the end unless --keep.
"""

import argparse
import json
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
GIB = 1 << 30


def timed(argv, stdout=subprocess.PIPE):
    t0 = time.monotonic()
    p = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE)
    wall = time.monotonic() - t0
    if p.returncode not in (0, 3):
        raise SystemExit(f"{argv[:3]} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return wall, p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.heap_bench_args(ap, "walker")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    lt = a.leaktrail
    exe = os.path.join(a.dir, "heap")
    subprocess.run(["gcc", "-O2", "-g", "-o", exe, os.path.join(ROOT, "bench", "findleaks", "heap.c")],
                   check=True)
    core = os.path.join(a.dir, "heap.core")

    print(f"== building {a.blocks:,} blocks, untraced")
    p = subprocess.Popen([exe, str(a.blocks)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    m = re.match(r"ready (\d+) (\d+) (\d+) (\d+) (\d+)", p.stdout.readline())
    if not m:
        raise SystemExit("heap did not start")
    pid, blocks, leaked_blocks, _, total = map(int, m.groups())
    t0 = time.monotonic()
    timed([lt, "snapshot", "-p", str(pid), "-o", core])
    snap_s = time.monotonic() - t0
    p.stdin.write("q")
    p.stdin.flush()
    p.wait(timeout=600)
    size = os.path.getsize(core)
    print(f"   {total / GIB:.2f} GiB in {blocks:,} blocks; snapshot {size / GIB:.2f} GiB in {snap_s:.1f} s")

    timed(["cat", core], stdout=subprocess.DEVNULL)  # warm the page cache
    base = [timed(["cat", core], stdout=subprocess.DEVNULL)[0] for _ in range(a.runs)]
    walks = []
    for _ in range(a.runs):
        wall, out = timed([lt, "info", core, "--json"])
        w = json.loads(out)["heap_walk"]
        walks.append(wall)
    chunks = w["chunks"]
    # heap.c's blocks, its array of list heads and stdout's buffer.
    if chunks != blocks + 2 or w["problems"]:
        print(f"   WARNING: the walk found {chunks:,} chunks (expected {blocks + 2:,}); "
              f"problems: {w['problems'][:3]}")
    wm, bm = statistics.median(walks), statistics.median(base)
    print(f"== walk ({a.runs} runs, median): {wm:.2f} s for {chunks:,} chunks, "
          f"{chunks / wm / 1e6:.2f} M chunks/s; {w['arenas']} arenas, {w['heaps']} heaps")
    print(f"   baseline, reading the core once: {bm:.2f} s ({size / GIB / bm:.2f} GiB/s)")
    print(f"   walk / baseline: {wm / bm:.2f}")
    leaks = []
    for _ in range(max(1, a.runs // 2)):
        wall, out = timed([lt, "leaks", core, "--json"])
        leaks.append(wall)
    l = json.loads(out)
    got = (l["definite"]["blocks"], l["indirect"]["blocks"])
    lists = blocks // 1000
    want = (lists // 100, lists // 100 * 999)
    print(f"== leaks on the walked heap ({len(leaks)} runs, median): {statistics.median(leaks):.2f} s; "
          f"definite/indirect blocks {got}{'' if got == want else f' (expected {want})'}")
    if not a.keep:
        os.remove(core)


if __name__ == "__main__":
    main()
