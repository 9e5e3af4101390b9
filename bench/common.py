"""What the benchmark runners share: the repository root, the leaktrail to
measure, a target driven by one character per request on its stdin and
one line per answer on its stdout, medians, and the arguments of the
big-heap runners (findleaks, walker).

A runner under bench/NAME/ imports it with

    sys.path.insert(0, os.path.dirname(HERE))
    import common
"""

import os
import shutil
import statistics
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def leaktrail(explicit=None):
    """`explicit`, else the release build, else the debug one."""
    if explicit:
        return explicit
    for profile in ("release", "debug"):
        p = os.path.join(ROOT, "target", profile, "leaktrail")
        if os.path.exists(p):
            return p
    raise SystemExit("build leaktrail first: cargo build --release -p leaktrail")


class LineTarget:
    """A program that prints "ready PID ..." once set up, then answers each
    character written to its stdin with one line, and exits on "q"
    (bench/snapshot/touch.c, bench/findleaks/heap.c)."""

    def __init__(self, argv, what):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  bufsize=1)
        self.ready = self.p.stdout.readline()
        if not self.ready.startswith("ready "):
            raise SystemExit(f"{what} did not start: {self.ready!r}")
        self.pid = int(self.ready.split()[1])

    def ask(self, c):
        self.p.stdin.write(c)
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self, timeout=60):
        try:
            self.p.stdin.write("q")
            self.p.stdin.flush()
        except BrokenPipeError:
            pass
        self.p.wait(timeout=timeout)


class TouchTarget(LineTarget):
    """bench/snapshot/touch.c: its ticker's longest gap is the pause as the
    target lived it."""

    def reset(self):
        assert self.ask("r") == "reset"

    def gap_ns(self):
        return int(self.ask("g").split()[1])


def touch_bench(args):
    """For bench/snapshot's runners: the leaktrail to measure (`--leaktrail`)
    and bench/snapshot/touch.c built into `--dir`; gcore must be there."""
    tool = leaktrail(args.leaktrail)
    if shutil.which("gcore") is None:
        raise SystemExit("gcore (gdb) is needed")
    os.makedirs(args.dir, exist_ok=True)
    exe = os.path.join(args.dir, "touch")
    subprocess.run(["gcc", "-O2", "-pthread", "-o", exe,
                    os.path.join(ROOT, "bench", "snapshot", "touch.c")], check=True)
    return tool, exe


def med(rows, key):
    """The median of `key` over `rows` (dicts)."""
    return statistics.median(r[key] for r in rows)


def heap_bench_args(ap, name):
    """The arguments findleaks/run.py and walker/run.py share; `name` names
    the scratch directory under target/."""
    ap.add_argument("--blocks", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default=os.path.join(ROOT, "target", f"bench-{name}"))
    ap.add_argument("--leaktrail", default=os.path.join(ROOT, "target", "release", "leaktrail"))
    ap.add_argument("--keep", action="store_true", help="keep the big core")
    return ap
