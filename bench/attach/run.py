#!/usr/bin/env python3
"""The pause `leaktrail attach` puts a running program through.

Issue 12 (item 3) asks how long attaching stops the target (DESIGN's second
wave: at most 50 ms). The program is fixtures/attach_threads.c: 8 threads
in a malloc/calloc/realloc/free loop. Each round, on the same running
program:

- baseline: `leaktrail snapshot -p PID --memory none`, a plain stop of
  every thread and a notes-only core: its pause (from `info --json`) is what
  stopping this program costs at all;
- attach: `leaktrail attach -p PID --memory tables --every 0`, which prints
  how long the threads were stopped (seize, pick a thread at a safe point,
  let the others go) and how long the borrowed thread spent in dlopen and
  the tracer's init; then `leaktrail detach -p PID`, timed too.

Prints the medians and attach's pause as a ratio of the baseline's. With
--heaptrack, also times `heaptrack -p PID` (gdb-based injection) from its
start to its "injection finished" line, when heaptrack is installed.

Usage: bench/attach/run.py [--runs 9] [--leaktrail PATH] [--heaptrack]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402

ROOT = common.ROOT


def start_program(work):
    exe = os.path.join(work, "attach_threads")
    subprocess.run(["gcc", "-O1", "-pthread", "-o", exe,
                    os.path.join(ROOT, "fixtures", "attach_threads.c")], check=True)
    p = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def baseline_pause(lt, pid, work, i):
    core = os.path.join(work, f"base-{i}.core")
    subprocess.run([lt, "snapshot", "-p", str(pid), "--memory", "none", "-o", core],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    info = json.loads(subprocess.run([lt, "info", core, "--json"], check=True,
                                     capture_output=True, text=True).stdout)
    os.remove(core)
    return info["pause_ns"] / 1e6


def attach_round(lt, pid, work, i):
    out = os.path.join(work, f"rec-{i}")
    shutil.rmtree(out, ignore_errors=True)
    a = subprocess.Popen([lt, "attach", "-p", str(pid), "--every", "0", "--memory", "tables",
                          "--out", out], stderr=subprocess.PIPE, text=True)
    line = a.stderr.readline()
    m = re.search(r"stopped ([0-9.]+) ms, the tracer loaded in ([0-9.]+) ms", line)
    if not m:
        raise SystemExit(f"attach said: {line}{a.stderr.read()}")
    t = time.perf_counter()
    subprocess.run([lt, "detach", "-p", str(pid)], check=True, stderr=subprocess.DEVNULL)
    detach_s = time.perf_counter() - t
    a.stderr.read()
    a.wait()
    shutil.rmtree(out, ignore_errors=True)
    return float(m.group(1)), float(m.group(2)), detach_s * 1e3


def heaptrack_attach(pid, work):
    if not shutil.which("heaptrack"):
        return None
    t = time.perf_counter()
    h = subprocess.Popen(["heaptrack", "-p", str(pid)], cwd=work, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    took = None
    for line in h.stdout:
        if "injection finished" in line:
            took = time.perf_counter() - t
            break
        if "error" in line.lower() or "failed" in line.lower():
            print("heaptrack:", line.strip())
    return h, took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--leaktrail", default=None)
    ap.add_argument("--heaptrack", action="store_true")
    args = ap.parse_args()
    lt = common.leaktrail(args.leaktrail)
    work = tempfile.mkdtemp(prefix="leaktrail-bench-attach-")
    prog = start_program(work)
    base, pause, load, detach = [], [], [], []
    try:
        for i in range(args.runs):
            base.append(baseline_pause(lt, prog.pid, work, i))
            p, l, d = attach_round(lt, prog.pid, work, i)
            pause.append(p)
            load.append(l)
            detach.append(d)
        med = statistics.median
        print(f"program: 8 threads in a malloc loop, {args.runs} rounds (medians)")
        print(f"  stop of every thread (snapshot --memory none): {med(base):7.1f} ms")
        print(f"  attach: threads stopped                         {med(pause):7.1f} ms  "
              f"({med(pause) / med(base):.2f}x the plain stop)")
        print(f"  attach: dlopen + tracer init in one thread      {med(load):7.1f} ms")
        print(f"  detach (last snapshot, GOT restored), wall      {med(detach):7.1f} ms")
        if args.heaptrack:
            r = heaptrack_attach(prog.pid, work)
            if r is None:
                print("  heaptrack -p: not installed")
            else:
                h, took = r
                print("  heaptrack -p: " + (f"attached after {took * 1e3:.0f} ms (wall, gdb-based)"
                                            if took is not None else "did not attach"))
                prog.stdin.write("q")
                prog.stdin.flush()
                h.wait(timeout=120)
    finally:
        if prog.poll() is None:
            prog.stdin.write("q")
            prog.stdin.flush()
        print("  program said:", prog.stdout.readline().strip())
        prog.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
