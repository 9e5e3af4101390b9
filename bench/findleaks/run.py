#!/usr/bin/env python3
"""findleaks and refs on a big snapshot, and valgrind for comparison.

Builds bench/findleaks/heap.c, runs it under `leaktrail run` with BLOCKS
live buffers (10 M: about 4 GiB, 1% of them leaked in lists whose heads were
dropped), snapshots it with `leaktrail snapshot --memory full`, then times
`leaktrail leaks --json` and `leaktrail refs --json` several times each
(medians), with 2 threads and with 1. For each run it reports wall time,
the scan time leaks measures itself, GiB/s per core, and the peak memory of
the analysis: anonymous (what it allocated) and file-backed (the core's
pages it touched through its mmap: page cache, not copies).

Then, on the same program at a smaller scale (--valgrind-blocks), the wall
time of `valgrind --leak-check=full` against leaktrail's run + snapshot +
leaks for the same leaks.

Usage: bench/findleaks/run.py [--blocks 10000000] [--runs 5]
                              [--valgrind-blocks 200000] [--dir DIR]
                              [--leaktrail PATH] [--keep]

Needs gcc, valgrind, and a release leaktrail with its preload library
(cargo build --release -p leaktrail -p leaktrail-preload). The core is
about 1.1x the heap: check free disk first (df -h); it is deleted at the
end unless --keep.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402

ROOT = common.ROOT
GIB = 1 << 30


def compile_heap(out_dir):
    exe = os.path.join(out_dir, "heap")
    subprocess.run(["gcc", "-O2", "-g", "-o", exe, os.path.join(HERE, "heap.c")], check=True)
    return exe


class Traced:
    """heap under `leaktrail run`, waiting on stdin."""

    def __init__(self, leaktrail, exe, blocks):
        self.p = subprocess.Popen([leaktrail, "run", "--no-record", "--", exe, str(blocks)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        line = self.p.stdout.readline()
        self.build_seconds = time.monotonic() - t0
        m = re.match(r"ready (\d+) (\d+) (\d+) (\d+) (\d+)", line)
        if not m:
            raise SystemExit(f"heap did not start: {line!r}")
        self.pid, self.blocks, self.leaked_blocks, self.leaked_bytes, self.total = map(int, m.groups())

    def finish(self):
        try:
            self.p.stdin.write("q")
            self.p.stdin.flush()
        except BrokenPipeError:
            pass
        self.p.wait(timeout=600)


def measured(argv):
    """Runs argv; returns (wall s, stdout, max RssAnon KiB, max RssFile KiB,
    ru_maxrss KiB)."""
    peak = {"anon": 0, "file": 0}
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample():
        path = f"/proc/{p.pid}/status"
        while not done.is_set():
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            peak["anon"] = max(peak["anon"], int(line.split()[1]))
                        elif line.startswith("RssFile:"):
                            peak["file"] = max(peak["file"], int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out_chunks = []

    def drain():
        out_chunks.append(p.stdout.read())

    dr = threading.Thread(target=drain, daemon=True)
    dr.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    done.set()
    dr.join()
    th.join()
    err = p.stderr.read().decode(errors="replace")
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode not in (0, 3):
        raise SystemExit(f"{argv[:3]} failed ({p.returncode}): {err}")
    return wall, b"".join(out_chunks), peak["anon"], peak["file"], ru.ru_maxrss


def snapshot(leaktrail, pid, core):
    t0 = time.monotonic()
    out = subprocess.run([leaktrail, "snapshot", "-p", str(pid), "-o", core],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"snapshot failed: {out.stderr}")
    return time.monotonic() - t0


def bench_leaks(leaktrail, core, runs, threads, expect):
    rows = []
    for _ in range(runs):
        wall, out, anon, filek, maxrss = measured(
            [leaktrail, "leaks", core, "--json", "--threads", str(threads)])
        l = json.loads(out)
        got = (l["definite"]["blocks"], l["indirect"]["blocks"])
        if expect and got != expect:
            print(f"  WARNING: leaks found definite/indirect {got}, expected {expect}")
        rows.append((wall, l["scan_seconds"], l["scanned_bytes"], anon, filek, maxrss,
                     l["scan_cpu_seconds"]))
    return rows


def bench_refs(leaktrail, core, addr, runs, threads):
    rows = []
    for _ in range(runs):
        wall, out, anon, filek, maxrss = measured(
            [leaktrail, "refs", core, hex(addr), "--json", "--threads", str(threads)])
        r = json.loads(out)
        rows.append((wall, r["scanned_bytes"], anon, filek, maxrss, len(r["refs"])))
    return rows


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.heap_bench_args(ap, "findleaks")
    ap.add_argument("--valgrind-blocks", type=int, default=200_000)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    lt = a.leaktrail
    exe = compile_heap(a.dir)
    core = os.path.join(a.dir, "heap.core")

    print(f"== building {a.blocks:,} blocks under the tracer")
    t = Traced(lt, exe, a.blocks)
    print(f"   {t.total / GIB:.2f} GiB in {t.blocks:,} live blocks "
          f"({t.leaked_blocks:,} leaked, {t.leaked_bytes / (1 << 20):.1f} MiB), "
          f"built in {t.build_seconds:.1f} s")
    snap_s = snapshot(lt, t.pid, core)
    t.finish()
    size = os.path.getsize(core)
    print(f"   snapshot {size / GIB:.2f} GiB written in {snap_s:.1f} s")
    lists = t.blocks // 1000
    expect = (lists // 100, lists // 100 * 999)
    print(f"   load average before the analyses: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    # Warm the page cache once so every timed run sees the same state.
    measured([lt, "leaks", core, "--json", "--threads", "2"])

    for threads in (2, 1):
        rows = bench_leaks(lt, core, a.runs if threads == 2 else max(1, a.runs // 2), threads, expect)
        wall = med([r[0] for r in rows])
        scan = med([r[1] for r in rows])
        scanned = rows[0][2]
        print(f"== leaks, {threads} thread{'s' if threads > 1 else ''} ({len(rows)} runs, median)")
        print(f"   wall {wall:.2f} s (all runs: {', '.join(f'{r[0]:.2f}' for r in rows)})")
        cpu = med([r[6] for r in rows])
        print(f"   scan {scan:.2f} s over {scanned / GIB:.2f} GiB: "
              f"{scanned / GIB / scan:.2f} GiB/s, {scanned / GIB / scan / threads:.2f} GiB/s per core "
              f"by wall time; {cpu:.2f} s of CPU: {scanned / GIB / cpu:.2f} GiB per CPU second")
        print(f"   peak memory: anon {med([r[3] for r in rows]) / 1024:.0f} MiB, "
              f"file-backed (core pages mapped) {med([r[4] for r in rows]) / 1024:.0f} MiB, "
              f"ru_maxrss {med([r[5] for r in rows]) / 1024:.0f} MiB; snapshot {size / (1 << 20):.0f} MiB")

    # A buffer in the middle of the heap: the refs target.
    out = subprocess.run([lt, "bufs", core, "--size", "700..700", "--json"],
                         capture_output=True, text=True, check=True)
    bufs = json.loads(out.stdout)["buffers"]
    addr = bufs[len(bufs) // 2]["addr"]
    for threads in (2, 1):
        rows = bench_refs(lt, core, addr, a.runs if threads == 2 else max(1, a.runs // 2), threads)
        wall = med([r[0] for r in rows])
        scanned = rows[0][1]
        print(f"== refs {addr:#x}, {threads} thread{'s' if threads > 1 else ''} "
              f"({len(rows)} runs, median; {rows[0][5]} references)")
        print(f"   wall {wall:.2f} s over {scanned / GIB:.2f} GiB: {scanned / GIB / wall:.2f} GiB/s "
              f"(including opening and decoding the audit)")
        print(f"   peak memory: anon {med([r[2] for r in rows]) / 1024:.0f} MiB, "
              f"file-backed {med([r[3] for r in rows]) / 1024:.0f} MiB")

    if not a.keep:
        os.remove(core)

    vb = a.valgrind_blocks
    print(f"== valgrind --leak-check=full vs leaktrail, {vb:,} blocks")
    t0 = time.monotonic()
    vg = subprocess.run(["valgrind", "--leak-check=full", "--error-exitcode=0", exe, str(vb), "--exit"],
                        capture_output=True, text=True)
    vg_wall = time.monotonic() - t0
    def vg_blocks(kind):
        m = re.search(kind + r" lost: ([\d,]+) bytes in ([\d,]+) blocks", vg.stderr)
        return m.group(2) if m else "?"
    print(f"   valgrind: {vg_wall:.1f} s wall (program under memcheck + leak check); "
          f"definite {vg_blocks('definitely')}, indirect {vg_blocks('indirectly')}, "
          f"possible {vg_blocks('possibly')} blocks")
    small = os.path.join(a.dir, "small.core")
    t0 = time.monotonic()
    t = Traced(lt, exe, vb)
    run_s = time.monotonic() - t0
    snap_s = snapshot(lt, t.pid, small)
    t.finish()
    wall, out, anon, filek, _ = measured([lt, "leaks", small, "--json"])
    l = json.loads(out)
    print(f"   leaktrail: run to ready {run_s:.1f} s + snapshot {snap_s:.2f} s + leaks {wall:.2f} s "
          f"= {run_s + snap_s + wall:.1f} s; definite {l['definite']['blocks']}, "
          f"indirect {l['indirect']['blocks']}, possible {l['possible']['blocks']} blocks")
    os.remove(small)


if __name__ == "__main__":
    main()
