#!/usr/bin/env python3
"""Snapshot pause seen from inside a target that keeps writing: leaktrail's
default (copy-on-write) vs `--method stop` vs gdb's gcore, in one run; and
the bytes an hour of periodic snapshots writes, full vs incremental.

Part 1 starts bench/snapshot/touch.c with N MiB of touched heap in "write"
mode (its ticker thread writes 64 pages per millisecond tick round its
first --window MiB, 256 by default: a bounded working set, because
copy-on-write duplicates every page written while the image lives) and
takes, --runs times each and interleaved, a bare fork of the target by
itself (the kernel's cost, no ptrace: the floor of any fork-based pause),
a default leaktrail snapshot, a `--method stop` one and a gcore. The
pause is the ticker's longest gap between two wake-ups, as the target
lived it; beside it, the longest gap over as long a window without a
snapshot (on a busy machine the ticker waits for a CPU now and then).
Medians per size, ms per GiB of heap, ratios against stop-and-copy
measured in the same run, and where copy-on-write's pause went, phase by
phase (leaktrail's `-v`).

Memory: before each size the script checks that MemAvailable holds the
heap, the window (what the image duplicates) and 1 GiB to spare, and
skips the size with one line if not; before each run, that the window
and 1 GiB still fit. Only one copy ever exists besides the target's:
leaktrail's stop-and-copy stages in memory only what fits in half of
MemAvailable (else it streams to the file), gdb's gcore copies 1 MiB at
a time, and every core is deleted as soon as it is measured (also when a
run fails; stale ones from an interrupted run are removed at the start).

Part 2 (--hourly MIB) models a MIB-MiB process snapshotted every 10
minutes for an hour: a full snapshot, then six intervals in each of which
the target writes --dirty percent of its pages (`touch` in still mode, 'd'),
each followed by a full snapshot and by an incremental one against the
previous incremental (the chain) -- so both series see the same memory.
Prints the bytes written per hour for each series.

With --pages small,huge (the default) each size runs twice: a malloc'd
heap of 4 KiB pages, and one on transparent huge pages (a fork copies the
page tables of 4 KiB pages one entry per page: that is most of the
copy-on-write pause).

Usage: bench/snapshot/cow.py [--sizes 2048,16384] [--runs 3] [--pages small,huge]
                             [--window 256] [--gcore-max 2048] [--hourly 1024] [--dirty 5]
                             [--dir DIR] [--leaktrail PATH]

Needs gcc, gdb (gcore) and a built leaktrail (release recommended).
"""

import argparse
import glob
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


class Target(common.TouchTarget):
    def __init__(self, exe, mib, mode, pct=5, pages="small", window=0):
        super().__init__([exe, str(mib), mode, str(pct), pages, str(window)], "touch")
        # On a shared machine a big target is the one to go if memory runs
        # out, not somebody else's work.
        with open(f"/proc/{self.pid}/oom_score_adj", "w") as f:
            f.write("1000")

    def close(self):
        super().close(timeout=120)


# The phases `leaktrail snapshot -v` prints, in the order of the pause.
PHASES = ("stop", "maps", "probes", "not in a fork", "fork", "advice back", "copy", "release")
MARGIN_MIB = 1024


def snap(tool, t, out, extra=(), keep=False):
    """One `leaktrail snapshot -v` of `t` into `out`, removed after (unless
    `keep`): its size, cost and phases."""
    try:
        r = subprocess.run([tool, "snapshot", "-p", str(t.pid), "-o", out, "-v", *extra],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"leaktrail failed: {r.stderr}")
        size = os.path.getsize(out)
    finally:
        # A multi-GiB core on a shared disk goes as soon as it is measured.
        if not keep:
            remove(out)
    def ms(pattern, text=r.stdout):
        m = re.search(pattern, text)
        return float(m.group(1)) / 1e3 if m else float("nan")
    phases = next((l for l in r.stdout.splitlines() if l.startswith("phases:")), "")
    row = {"cpu": ms(r"cpu ([0-9.]+) ms"), "pause": ms(r"cost: .*?pause ([0-9.]+) ms"),
           "fork": ms(r"the kernel's fork ([0-9.]+) ms"), "kernel": ms(r"the kernel's ([0-9.]+) ms", phases),
           "bytes": size, "method": "cow" if ": cow" in r.stdout else "stop"}
    for name in PHASES:
        row[name] = ms(rf"(?:^|, |: ){name} ([0-9.]+) ms", phases)
    return row


def remove(path):
    for p in (path, path + ".tmp"):
        if os.path.exists(p):
            os.unlink(p)


def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


def leaktrail_pause(tool, t, out, extra):
    t.reset()
    started = time.monotonic()
    row = snap(tool, t, out, extra)
    row["gap"] = t.gap_ns() / 1e9
    row["wall"] = time.monotonic() - started
    return row


def no_snapshot(t, secs):
    """The ticker's longest gap over `secs` without any snapshot: what the
    machine's other work costs it (the floor under every gap measured)."""
    t.reset()
    time.sleep(secs)
    return {"gap": t.gap_ns() / 1e9}


def gcore_pause(t, prefix):
    t.reset()
    path = f"{prefix}.{t.pid}"
    try:
        r = subprocess.run(["gcore", "-o", prefix, str(t.pid)], capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(path):
            raise SystemExit(f"gcore failed: {r.stderr}")
        row = {"gap": t.gap_ns() / 1e9, "bytes": os.path.getsize(path)}
    finally:
        remove(path)
    return row


def bare_fork(t):
    return {"gap": int(t.ask("f").split()[1]) / 1e9}


def phase_line(rows):
    """Where the copy-on-write pause went: the median of each phase."""
    parts = []
    for name in PHASES:
        values = [r[name] for r in rows if r[name] == r[name]]
        if not values or (name in ("advice back", "copy") and max(values) == 0):
            continue
        part = f"{name} {statistics.median(values) * 1e3:.2f}"
        if name == "fork":
            part += f" (the kernel's {common.med(rows, 'kernel') * 1e3:.2f})"
        parts.append(part)
    return ", ".join(parts)


def pauses(tool, exe, args):
    print(f"{args.runs} runs per size and method, interleaved; medians; the target writes 64 pages/ms"
          f" round its first {args.window} MiB (its working set: copy-on-write duplicates what is"
          " written while the image lives)")
    print("idle: the target's longest gap over as long a window as a cow snapshot took, without one"
          " (the machine's other work); fork: the target forking itself, no ptrace (the kernel's"
          " floor); cow: the pause the target saw, then leaktrail's own measure of it and of the fork"
          " inside it\n")
    header = (f"{'heap':>12} | {'idle':>7} | {'fork':>8} | {'cow pause':>10} {'ms/GiB':>7} {'ours':>8} {'fork in':>8}"
              f" {'cpu':>6} | {'stop pause':>10} {'ms/GiB':>7} | {'gcore pause':>11} | {'stop/cow':>8}"
              f" {'gcore/cow':>9}")
    print(header)
    print("-" * len(header))
    forks, phases = [], []
    for mib, pages in [(int(s), p) for p in args.pages.split(",") for s in args.sizes.split(",")]:
        label = f"{mib} MiB{' THP' if pages == 'huge' else ''}"
        # What the image duplicates: the pages written while it lives.
        window = min(args.window or mib, mib)
        need, free = mib + window + MARGIN_MIB, mem_available_mib()
        if need > free:
            print(f"{label:>12} | skipped: the heap, its {window} MiB window and {MARGIN_MIB} MiB to"
                  f" spare need {need} MiB, MemAvailable is {free} MiB", flush=True)
            continue
        t = Target(exe, mib, "write", pages=pages, window=args.window)
        fork, cow, stop, gc, idle = [], [], [], [], []
        try:
            for run in range(args.runs):
                free = mem_available_mib()
                if window + MARGIN_MIB > free:
                    print(f"  {label}: stopped after {run} runs: MemAvailable {free} MiB cannot hold"
                          f" the {window} MiB window and {MARGIN_MIB} MiB to spare")
                    break
                fork.append(bare_fork(t))
                cow.append(leaktrail_pause(tool, t, os.path.join(args.dir, "cow.core"), ()))
                idle.append(no_snapshot(t, cow[-1]["wall"]))
                stop.append(leaktrail_pause(tool, t, os.path.join(args.dir, "stop.core"),
                                            ("--method", "stop")))
                if not args.no_gcore and mib <= args.gcore_max:
                    gc.append(gcore_pause(t, os.path.join(args.dir, "gc")))
        finally:
            t.close()
        if not cow:
            continue
        if any(r["method"] != "cow" for r in cow):
            print("  (copy-on-write was not used: see leaktrail snapshot -v)")
        gib = mib / 1024
        f, c, s = common.med(fork, "gap"), common.med(cow, "gap"), common.med(stop, "gap")
        g = common.med(gc, "gap") if gc else float("nan")
        print(f"{label:>12} | {common.med(idle, 'gap') * 1e3:>5.1f}ms | {f * 1e3:>6.1f}ms | {c * 1e3:>8.1f}ms {c * 1e3 / gib:>7.1f}"
              f" {common.med(cow, 'pause') * 1e3:>6.1f}ms {common.med(cow, 'fork') * 1e3:>6.1f}ms"
              f" {common.med(cow, 'cpu'):>5.1f}s | {s * 1e3:>8.1f}ms {s * 1e3 / gib:>7.1f} |"
              f" {'n/a' if gc == [] else f'{g * 1e3:.1f}ms':>11} | {s / c:>7.1f}x"
              f" {'n/a' if gc == [] else f'{g / c:.1f}x':>9}", flush=True)
        phases.append((label, cow))
        if pages == "small":
            forks.append((mib, f, common.med(cow, "fork")))
    print("\nwhere leaktrail's copy-on-write pause went (medians, ms; `snapshot -v`'s phases line):")
    for label, rows in phases:
        print(f"  {label}: {phase_line(rows)}")
    for mib, f, inside in forks:
        n = mib * 256
        print(f"  the kernel's fork of {mib} MiB of 4 KiB pages ({n:,} page-table entries): bare"
              f" {f * 1e3:.1f} ms ({f * 1e3 * 1024 / mib:.1f} ms/GiB, {f * 1e9 / n:.0f} ns per page);"
              f" inside leaktrail's pause {inside * 1e3:.1f} ms ({inside * 1e3 * 1024 / mib:.1f} ms/GiB)")
    if args.gcore_max < max(int(s) for s in args.sizes.split(",")) and not args.no_gcore:
        print(f"  gcore ran on heaps up to {args.gcore_max} MiB only (--gcore-max)")
    print("\ngoal: copy-on-write pause <= 10 ms per GiB")


def hourly(tool, exe, args):
    mib, pct = args.hourly, args.dirty
    print(f"\n{mib} MiB process, a snapshot every 10 minutes, {pct}% of its pages written per interval"
          " (synthetic: touch.c 'd')")
    t = Target(exe, mib, "still", pct)
    d = args.dir
    full_bytes, inc_bytes, cpu_full, cpu_inc = 0, 0, [], []
    try:
        prev = os.path.join(d, "h0.core")
        first = snap(tool, t, prev, keep=True)
        for i in range(1, 7):
            assert t.ask("d") == "dirtied"
            full = os.path.join(d, "full.core")
            row = snap(tool, t, full)
            full_bytes += row["bytes"]
            cpu_full.append(row["cpu"])
            inc = os.path.join(d, f"h{i}.core")
            row = snap(tool, t, inc, ("--since", prev), keep=True)
            inc_bytes += row["bytes"]
            cpu_inc.append(row["cpu"])
            prev = inc
    finally:
        t.close()
        for i in range(7):
            remove(os.path.join(d, f"h{i}.core"))
    gib = 2**30
    print(f"  full:        {full_bytes / gib:>6.2f} GiB per hour ({full_bytes / 6 / 2**20:.0f} MiB each,"
          f" cpu {statistics.median(cpu_full):.2f} s each)")
    print(f"  incremental: {inc_bytes / gib:>6.2f} GiB per hour ({inc_bytes / 6 / 2**20:.0f} MiB each,"
          f" cpu {statistics.median(cpu_inc):.2f} s each), plus one full base of"
          f" {first['bytes'] / 2**20:.0f} MiB per chain")
    print(f"  ratio full/incremental: {full_bytes / max(inc_bytes, 1):.1f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="2048,16384", help="heap sizes in MiB, comma-separated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pages", default="small,huge",
                    help="heap pages: small (4 KiB, malloc'd), huge (MADV_HUGEPAGE), or both")
    ap.add_argument("--hourly", type=int, default=1024, help="MiB of the hourly model; 0 skips it")
    ap.add_argument("--dirty", type=int, default=5, help="percent of pages written per interval")
    ap.add_argument("--no-gcore", action="store_true", help="leave gcore out (slow on big heaps)")
    ap.add_argument("--gcore-max", type=int, default=2048,
                    help="largest heap (MiB) to gcore: 17 s per GiB here, and a core as big as the heap")
    ap.add_argument("--window", type=int, default=256,
                    help="MiB the target keeps writing round (its working set; 0: its whole heap, which"
                         " the image then duplicates whole during the copy)")
    ap.add_argument("--dir", default=os.path.join(ROOT, "target", "bench-snapshot"))
    ap.add_argument("--leaktrail", default=None)
    args = ap.parse_args()
    tool, exe = common.touch_bench(args)
    # Cores an interrupted run left behind.
    for p in glob.glob(os.path.join(args.dir, "*.core*")) + glob.glob(os.path.join(args.dir, "gc.*")):
        os.unlink(p)
    print(f"leaktrail: {tool}; cores in {args.dir}, each deleted once measured;"
          f" MemAvailable {mem_available_mib()} MiB")
    if args.sizes:
        pauses(tool, exe, args)
    if args.hourly:
        hourly(tool, exe, args)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
          " (other work on the machine stretches every pause)")


if __name__ == "__main__":
    sys.exit(main())
