#!/usr/bin/env python3
"""How many allocation stacks of the Node.js HTTP client have unnamed frames.

    python3 bench/node-http/jit_names.py [--seconds 20]

Runs examples/node-http-client (server untraced, client at 400 req/s) once
under `leaktrail run` and once under heaptrack. For leaktrail it snapshots
the client mid-run and reads every live allocation stack (`leaktrail bufs
--group-by stack --json`); a frame in anonymous memory (JIT code) counts as
named when the perf map names it (kind js or jit). For heaptrack it reads
the folded stacks of all allocations (`heaptrack_print -F`), where an
unresolved frame prints as its bare address. Prints, for each, the fraction of stacks
with at least one unnamed frame.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

# heaptrack_print's folded stacks show a frame it could not name as its bare
# address (sometimes with a source file): "0x7f43600034ff".
UNNAMED = re.compile(r"^(0x[0-9a-f]+|\?\?)( \(.*\))?$")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "node-http-client")
LEAKTRAIL = os.path.join(ROOT, "target", "release", "leaktrail")


def client(port, seconds):
    return ["node", os.path.join(EXAMPLE, "client.js"), "--port", str(port), "--duration", str(seconds),
            "--report", str(seconds + 10)]


def leaktrail_fraction(port, seconds, tmp):
    rec = os.path.join(tmp, "rec")
    run = subprocess.Popen([LEAKTRAIL, "run", "--every", "0", "--memory", "tables", "--out", rec, "--"]
                           + client(port, seconds), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # A benchmark, not a test: let the client reach its steady state.
    time.sleep(seconds / 2)
    subprocess.run([LEAKTRAIL, "snapshot", "--memory", "tables", "--recording", rec], check=True,
                   stdout=subprocess.DEVNULL)
    run.wait()
    snap = os.path.join(rec, "snapshots", "0001.core")
    out = subprocess.run([LEAKTRAIL, "bufs", snap, "--group-by", "stack", "--json"], check=True,
                         stdout=subprocess.PIPE)
    groups = json.loads(out.stdout)["groups"]
    stacks = len(groups)
    with_unnamed = 0
    jit_frames = unnamed_jit = 0
    for g in groups:
        unnamed_here = False
        for f in g["stack"]:
            if f.get("module") is None:
                jit_frames += 1
                if f.get("kind") not in ("js", "jit") or not f.get("function"):
                    unnamed_jit += 1
                    unnamed_here = True
        with_unnamed += unnamed_here
    return stacks, with_unnamed, jit_frames, unnamed_jit


def heaptrack_fraction(port, seconds, tmp):
    data = os.path.join(tmp, "ht")
    subprocess.run(["heaptrack", "-o", data] + client(port, seconds), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    zst = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.startswith("ht"))
    folded = os.path.join(tmp, "folded.txt")
    subprocess.run(["heaptrack_print", "-f", zst, "-F", folded, "--flamegraph-cost-type", "allocations"],
                   check=True, stdout=subprocess.DEVNULL)
    stacks = with_unnamed = 0
    with open(folded) as f:
        for line in f:
            frames = line.rsplit(" ", 1)[0].split(";")
            stacks += 1
            with_unnamed += any(UNNAMED.match(fr.strip()) for fr in frames)
    return stacks, with_unnamed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--port", type=int, default=18124)
    ap.add_argument("--no-build", action="store_true", help="use the release build already in target/")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--workspace", "--quiet"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="leaktrail-jit-names-")
    server = subprocess.Popen(["node", os.path.join(EXAMPLE, "server.js"), str(args.port)], stdout=subprocess.PIPE)
    try:
        server.stdout.readline()
        stacks, unnamed, jit, unnamed_jit = leaktrail_fraction(args.port, args.seconds, tmp)
        hstacks, hunnamed = heaptrack_fraction(args.port, args.seconds, tmp)
    finally:
        server.terminate()
        server.wait()
    print(f"leaktrail: {unnamed}/{stacks} live allocation stacks ({100 * unnamed / max(stacks, 1):.1f}%) "
          f"have an unnamed frame in JIT code; {unnamed_jit}/{jit} JIT frames unnamed "
          f"({100 * unnamed_jit / max(jit, 1):.1f}%)")
    print(f"heaptrack: {hunnamed}/{hstacks} allocation stacks ({100 * hunnamed / max(hstacks, 1):.1f}%) "
          f"have a frame it cannot name (printed as a bare address)")


if __name__ == "__main__":
    sys.exit(main())
