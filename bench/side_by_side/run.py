#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Side-by-side: runs each scenario through mp (mp_side), Python's
multiprocessing (bench/python/*.py, fork start method), the bare system calls
(mp_floor) and, for the queue scenarios that have one, Boost.Interprocess
(boost_side, if it was built), --repeat times, interleaved so that drift on a
shared machine hits all alike; prints a markdown table of the medians with each
target marked PASS or FAIL, and writes it with the machine's details to
bench/results/<date>-<hostname>.md, beside a bar chart of the same (.svg: how many
times Python's speed mp and the floor reach). A cell without an implementation
shows n/a. --background-load runs it all beside a busy loop per CPU at nice 19.

The round-trip scenarios (spawn, pingpong, event, queue-rt) run twice: unpinned,
and with every process pinned to one CPU (sched_setaffinity before exec;
children inherit it). The lock scenario has a second row whose floor is a robust
pthread mutex.

Usage: run.py [--rounds N] [--repeat R] [--scenario NAME] [--build-dir DIR] [--output FILE|-]
              [--env NAME=VALUE] [--background-load] [--check]
"""
import argparse
import datetime
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
SOURCE_DIR = BENCH_DIR.parent
IMPLEMENTATIONS = ("mp", "python", "boost", "floor")
# The ratio columns of the table; a target on another ratio shows its value in the targets column.
RATIO_COLUMNS = ("mp/floor", "python/mp", "mp/boost")


# What each program prints, by scenario kind: (unit, lower is better).
KINDS = {
    "latency": ("µs", True),
    "latency-ns": ("ns", True),
    "rate": ("M/s", False),  # millions of operations per second
    "throughput": ("GB/s", False),  # 10^9 bytes per second
    "speedup": ("x", False),  # serial time over parallel time
}

# What one of a mode's rounds is, where it is not one timed round trip.
ROUNDS_UNIT = {"throughput": " messages", "lock": " batches of 1000 pairs",
               "increments": " increments per process", "queue8": " items",
               "queue4k": " items", "queue-mpmc": " items in all",
               "queue-big": " items of 64 MiB", "pool-map": " items per map",
               "pool-map1": " items per map", "executor-submit": " tasks",
               "pool-cpu": " (primes below this)",
               "manager-batch": " update() calls of 10000 pairs"}


@dataclass
class Target:
    """A target from the issue: `ratio op bound`, the ratio of the medians as written, or, for a
    single implementation ("mp"), `median op bound` in the scenario's unit."""
    ratio: str  # "mp/floor", "python/mp", "mp/boost" (table columns), "mp/python", or "mp"
    op: str  # "<=" or ">="
    bound: float
    # Shown, but not counted by --check: a target of ours, not the issue's.
    informational: bool = False

    def value(self, medians):
        """The ratio (or the median), or None if an implementation it needs did not run."""
        parts = self.ratio.split("/")
        if any(medians.get(part) is None for part in parts):
            return None
        if len(parts) == 2 and medians[parts[1]] == 0:
            return None  # too short a run to measure (--rounds 4)
        return medians[parts[0]] / medians[parts[1]] if len(parts) == 2 else medians[parts[0]]

    def passed(self, medians):
        """True or False; None if it cannot be judged (no Boost)."""
        value = self.value(medians)
        if value is None:
            return None
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def describe(self, medians, unit):
        absolute = "/" not in self.ratio
        text = f"{self.ratio} {self.op} {self.bound:.3g}" + (f" {unit}" if absolute else "")
        value = self.value(medians)
        if value is None:
            missing = [p for p in self.ratio.split("/") if medians.get(p) is None]
            if not missing:
                return text + ": n/a (a median of 0: too short a run)"
            return text + f": n/a (no {', '.join(missing)})"
        if self.ratio not in RATIO_COLUMNS:  # not in a column: show it here
            text += f" (is {value:.2f})" if absolute else f" (is {value:.1f})"
        text += f": {'PASS' if self.passed(medians) else 'FAIL'}"
        return text + (" (informational)" if self.informational else "")


@dataclass
class Scenario:
    name: str
    mode: str  # mp_side / mp_floor mode, and what --scenario selects
    python_script: str
    pinned: bool
    kind: str  # a key of KINDS
    # Timed rounds per run unless --rounds says otherwise. The round trip is so short that
    # 1000 rounds last a few milliseconds, which is too little for the scheduler's placement
    # of the two processes to settle; 20000 last about a second at Python's speed.
    rounds: int
    targets: tuple = ()  # of Target; none for a reference row
    # The mp_floor mode, if not `mode`; None: no floor; "mp_side:<mode>": mp's own <mode> stands
    # as the floor (the forkserver target is relative to our fork).
    floor_mode: str | None = ""
    boost_mode: str | None = None  # the boost_side mode; None: no Boost side
    # Timed rounds of the Python side, where it is so slow that `rounds` would take minutes; it
    # reports a rate, which does not depend on how many items it was measured over.
    python_rounds: int | None = None
    values: dict = field(default_factory=lambda: {i: [] for i in IMPLEMENTATIONS})

    def median(self, implementation):
        """The median of the runs, or None if this implementation did not run."""
        values = self.values[implementation]
        return statistics.median(values) if values else None

    def implementations(self, args):
        """Those that run this scenario here: Boost only if it has a mode and boost_side was
        built, the floor unless the scenario has none."""
        present = ["mp", "python"]
        if self.boost_mode is not None and args.have_boost:
            present.append("boost")
        if self.floor_mode is not None:
            present.append("floor")
        return present

    def rounds_for(self, implementation, args):
        if args.rounds:
            return args.rounds
        if implementation == "python" and self.python_rounds:
            return self.python_rounds
        return self.rounds


SPAWN_TARGETS = (Target("mp/floor", "<=", 1.5), Target("python/mp", ">=", 10))
PINGPONG_TARGETS = (Target("mp/floor", "<=", 1.3),)
# No target in the issue; ours: an event round trip costs little more than the two futex wakes.
EVENT_TARGETS = (Target("mp/floor", "<=", 2, informational=True),)
# The issue: "within 2x of Open MPI's shared-memory ping-pong", which it measured at 0.71 µs on
# this machine: mp <= 1.42 µs. Open MPI polls; pinned to one CPU, polling cannot help, so the
# pinned row has only our informational bound against the two bare rings.
QUEUE_RT_TARGET = Target("mp", "<=", 1.42)
# The pools' CPU-bound map: a speedup over serial of at least 0.9 times the usable CPUs.
CPUS = len(os.sched_getaffinity(0))

SCENARIOS = (
    Scenario("spawn: start + join", "spawn", "process_start.py", False, "latency", 1000,
             SPAWN_TARGETS),
    Scenario("spawn: start + join, pinned", "spawn", "process_start.py", True, "latency", 1000,
             SPAWN_TARGETS),
    # The spawn start method: a fresh run of the program. Floor: fork + exec of mp_side itself
    # (it exits at once); the targets: within 2x of that, and 20x faster than Python's.
    Scenario("spawn-method: start + join under spawn", "spawn-method", "process_start_spawn.py",
             False, "latency", 200, (Target("mp/floor", "<=", 2), Target("python/mp", ">=", 20)),
             floor_mode="exec-side", python_rounds=50),
    # The forkserver start method. Floor: mp's own fork start method; the target: within
    # 2x of it. Python's forkserver start + join is the comparison (28.6 ms in the issue).
    Scenario("forkserver-method: start + join under forkserver (floor: mp's fork)",
             "forkserver-method", "process_start_forkserver.py", False, "latency", 500,
             (Target("mp/floor", "<=", 2), Target("python/mp", ">=", 20, informational=True)),
             floor_mode="mp_side:spawn", python_rounds=100),
    Scenario("pingpong: 8-byte round trip", "pingpong", "pipe_roundtrip.py", False, "latency",
             20000, PINGPONG_TARGETS),
    Scenario("pingpong: 8-byte round trip, pinned", "pingpong", "pipe_roundtrip.py", True,
             "latency", 20000, PINGPONG_TARGETS),
    Scenario("throughput: 1 MiB messages", "throughput", "pipe_throughput.py", False,
             "throughput", 2000, (Target("mp/floor", ">=", 0.8),)),
    # Uncontended, one process: pinning changes nothing. A run times 2000 batches of 1000 pairs.
    Scenario("lock: uncontended acquire + release", "lock", "lock_uncontended.py", False,
             "latency-ns", 2000, (Target("mp/floor", "<=", 1.3),)),
    Scenario("lock: the same, floor a robust pthread mutex", "lock", "lock_uncontended.py", False,
             "latency-ns", 2000, floor_mode="lock-robust"),
    # Each program puts its two processes on two CPUs itself.
    Scenario("increments: 2 processes, 1 locked counter", "increments", "value_increments.py",
             False, "rate", 200000, (Target("mp/python", ">=", 20),)),
    Scenario("event: set/wait round trip", "event", "event_pingpong.py", False, "latency", 20000,
             EVENT_TARGETS),
    Scenario("event: set/wait round trip, pinned", "event", "event_pingpong.py", True, "latency",
             20000, EVENT_TARGETS),
    # The queues. Items per second, taken by the consumer over the timed items; Python gets a
    # tenth of the items (it runs 50-100x slower).
    Scenario("queue8: 1 producer, 1 consumer, 8-byte items", "queue8", "queue_8byte.py", False,
             "rate", 2_000_000,
             (Target("mp/python", ">=", 100), Target("mp/boost", ">=", 4)),
             boost_mode="queue8", python_rounds=200_000),
    Scenario("queue4k: 1 producer, 1 consumer, 4 KiB items", "queue4k", "queue_4k.py", False,
             "rate", 200_000, (Target("mp/boost", ">=", 2),), boost_mode="queue4k",
             python_rounds=50_000),
    Scenario("queue-mpmc: 4 producers, 4 consumers, 8-byte items", "queue-mpmc",
             "queue_mpmc.py", False, "rate", 2_000_000, boost_mode="queue-mpmc",
             python_rounds=200_000),
    Scenario("queue-big: one 64 MiB item at a time", "queue-big", "queue_big.py", False,
             "throughput", 30, (Target("mp/floor", ">=", 1 / 3),), python_rounds=10),
    Scenario("queue-rt: round trip through two queues", "queue-rt", "queue_roundtrip.py", False,
             "latency", 20000, (QUEUE_RT_TARGET,), boost_mode="queue-rt"),
    Scenario("queue-rt: round trip through two queues, pinned", "queue-rt",
             "queue_roundtrip.py", True, "latency", 20000,
             (Target("mp/floor", "<=", 2, informational=True),), boost_mode="queue-rt"),
    # The pools, 2 workers each (the CPU-bound one: one per CPU). The round trips' floor is the
    # bare pipe round trip to another process.
    Scenario("pool-map: x*x over 1M ints, default chunksize", "pool-map", "pool_map.py", False,
             "rate", 1_000_000, (Target("mp/python", ">=", 20),), floor_mode=None),
    Scenario("pool-map1: x*x over 100k ints, chunksize 1", "pool-map1",
             "pool_map_chunksize1.py", False, "rate", 100_000, (Target("mp/python", ">=", 50),),
             floor_mode=None, python_rounds=10_000),
    Scenario("pool-apply: apply() round trip", "pool-apply", "pool_apply.py", False, "latency",
             20000, (Target("python/mp", ">=", 5),), floor_mode="pingpong", python_rounds=5000),
    Scenario("executor-submit: 100k tiny tasks, then their results", "executor-submit",
             "executor_submit.py", False, "rate", 100_000, (Target("mp/python", ">=", 100),),
             floor_mode=None, python_rounds=10_000),
    Scenario("executor-rt: submit().result() round trip", "executor-rt",
             "executor_roundtrip.py", False, "latency", 20000, (Target("python/mp", ">=", 5),),
             floor_mode="pingpong", python_rounds=5000),
    Scenario(f"pool-cpu: primes, speedup over serial on {CPUS} workers", "pool-cpu",
             "pool_cpu.py", False, "speedup", 2_000_000, (Target("mp", ">=", 0.9 * CPUS),),
             floor_mode=None, python_rounds=200_000),
    # The same on threads: mp::thread_pool beside Python's ThreadPool and ThreadPoolExecutor.
    Scenario("thread-map1: x*x over 100k ints on 2 threads, chunksize 1", "thread-map1",
             "thread_pool_map1.py", False, "rate", 100_000, floor_mode=None,
             python_rounds=20_000),
    Scenario("thread-apply: apply() round trip on 2 threads", "thread-apply",
             "thread_pool_apply.py", False, "latency", 20000, floor_mode=None,
             python_rounds=5000),
    Scenario("thread-submit: 100k tiny tasks on 2 threads (Python: ThreadPoolExecutor)",
             "thread-submit", "thread_executor_submit.py", False, "rate", 100_000,
             floor_mode=None, python_rounds=20_000),
    # Listener and client over TCP on loopback, with an authkey. Floor: a bare TCP
    # connection (TCP_NODELAY) to a forked child, without authentication.
    Scenario("listener-connect: connect + authenticate + 8-byte round trip (TCP)",
             "listener-connect", "listener_connect.py", False, "latency", 1000,
             (Target("python/mp", ">=", 10),), floor_mode="tcp-connect", python_rounds=100),
    Scenario("listener-rt: 8-byte round trip on an open TCP connection", "listener-rt",
             "listener_roundtrip.py", False, "latency", 20000,
             (Target("mp/floor", "<=", 1.3),), floor_mode="tcp-rt"),
    # Managers: a dict in a manager's server (a process of its own), called from a child that
    # was given its proxy, as Python's users pass one to a Process; the child times its calls.
    # Floor: the bare socketpair round trip of pingpong (the server listens on a Unix stream
    # socket, so one call is one such round trip to another process).
    Scenario("manager-rt: dict get() round trip from a child", "manager-rt",
             "manager_roundtrip.py", False, "latency", 20000,
             (Target("mp/floor", "<=", 1.3), Target("python/mp", ">=", 20)),
             floor_mode="pingpong"),
    # Items per second: update() calls of 10,000 pairs each (the same keys, new values).
    Scenario("manager-batch: dict update() of 10k pairs from a child", "manager-batch",
             "manager_batch.py", False, "rate", 200, (Target("mp", ">=", 1.0),),
             floor_mode=None),
)


def command(scenario, implementation, args):
    rounds = str(scenario.rounds_for(implementation, args))
    if implementation == "mp":
        return [str(args.build_dir / "bench" / "mp_side"), scenario.mode, rounds]
    if implementation == "floor":
        if scenario.floor_mode and scenario.floor_mode.startswith("mp_side:"):
            return [str(args.build_dir / "bench" / "mp_side"),
                    scenario.floor_mode.removeprefix("mp_side:"), rounds]
        return [str(args.build_dir / "bench" / "mp_floor"), scenario.floor_mode or scenario.mode,
                rounds]
    if implementation == "boost":
        return [str(args.build_dir / "bench" / "boost_side"), scenario.boost_mode, rounds]
    return [args.python, str(BENCH_DIR / "python" / scenario.python_script), rounds]


def run_once(scenario, implementation, args):
    def pin():
        os.sched_setaffinity(0, {args.pin_cpu})

    argv = command(scenario, implementation, args)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=args.environment,
                          preexec_fn=pin if scenario.pinned else None) as run:
        try:
            stdout, stderr = run.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            run.kill()
            stdout, stderr = run.communicate()
            stderr += f"\n(killed after {args.timeout:g} s)"
        finally:
            if implementation == "boost":
                remove_boost_names(run.pid)
    if run.returncode != 0:
        sys.exit(f"run.py: {' '.join(argv)} failed ({run.returncode}):\n{stderr}")
    return float(stdout.split()[-1])


def remove_boost_names(pid):
    """boost_side removes its message_queue names itself, except when it is killed (SIGKILL)."""
    for leftover in Path("/dev/shm").glob(f"mp-bench-boost-{pid}-*"):
        leftover.unlink(missing_ok=True)


def fmt(scenario, value):
    if value is None:
        return "n/a"
    unit, _ = KINDS[scenario.kind]
    if unit in ("GB/s", "M/s"):
        return f"{value:.3f} {unit}" if value < 0.1 else f"{value:.2f} {unit}"
    return f"{value:,.1f} {unit}" if value >= 10 else f"{value:,.2f} {unit}"


def ratio(medians, name):
    top, bottom = name.split("/")
    if medians[top] is None or medians[bottom] is None or medians[bottom] == 0:
        return "n/a"  # not run, or too short a run to measure (--rounds 4)
    return f"{medians[top] / medians[bottom]:.2f}"


def table(scenarios):
    lines = ["| scenario | mp | python | boost | floor | " + " | ".join(RATIO_COLUMNS)
             + " | targets |", "|---|" + "---:|" * (4 + len(RATIO_COLUMNS)) + "---|"]
    all_passed = True
    for s in scenarios:
        medians = {i: s.median(i) for i in IMPLEMENTATIONS}
        unit, _ = KINDS[s.kind]
        marks = [t.describe(medians, unit) for t in s.targets] or ["none (reference)"]
        # A target that cannot be judged here (no Boost) neither passes nor fails.
        all_passed = all_passed and all(t.passed(medians) is not False for t in s.targets
                                        if not t.informational)
        cells = [fmt(s, medians[i]) for i in IMPLEMENTATIONS]
        cells += [ratio(medians, name) for name in RATIO_COLUMNS]
        lines.append(f"| {s.name} | {' | '.join(cells)} | {'; '.join(marks)} |")
    return "\n".join(lines), all_passed


LEGEND = ("Latency in µs or ns (lower is better); throughput in GB/s = 10^9 bytes/s and rates in "
          "M/s = 10^6 operations (or items) per second (higher is better). The ratio columns "
          "divide the medians as written, so mp/floor and mp/boost above 1 mean mp is slower for "
          "latency and faster for throughput and rates, and python/mp above 1 means mp is faster "
          "for latency and slower for throughput and rates. A target on a ratio that is not a "
          "column, or on mp's own median, shows its value. n/a: that implementation has no "
          "side in this scenario (Boost: only the queues, and only where boost_side was built).")


def raw_values(scenarios):
    lines = ["| scenario | implementation | runs (each the median of its rounds, or for GB/s "
             "and M/s the rate over the run) |", "|---|---|---|"]
    for s in scenarios:
        for i in IMPLEMENTATIONS:
            if s.values[i]:
                runs = ", ".join(f"{v:.3f}" if v < 0.1 else f"{v:.2f}" for v in s.values[i])
                lines.append(f"| {s.name} | {i} | {runs} |")
    return "\n".join(lines)


def times_python(scenario, implementation):
    """How many times better than Python's multiprocessing `implementation` did (above 1:
    faster), or None where either did not run."""
    mine, python = scenario.median(implementation), scenario.median("python")
    if not mine or not python:
        return None
    _, lower_is_better = KINDS[scenario.kind]
    return python / mine if lower_is_better else mine / python


def chart(scenarios, title):
    """The table as an SVG bar chart: per scenario, how many times better than Python mp and
    the bare system calls are, on a logarithmic axis (1 = Python's speed)."""
    rows = [(s.name, times_python(s, "mp"), times_python(s, "floor")) for s in scenarios]
    rows = [r for r in rows if r[1] is not None]
    values = [v for _, mp, floor in rows for v in (mp, floor) if v]
    low = 10 ** math.floor(math.log10(min(values + [1.0])))
    high = 10 ** math.ceil(math.log10(max(values + [10.0])))
    label_width, plot_width, row_height, top = 360, 520, 34, 60
    width, height = label_width + plot_width + 90, top + row_height * len(rows) + 50

    def x(value):
        return label_width + plot_width * (math.log10(value) - math.log10(low)) / (
            math.log10(high) - math.log10(low))

    def text(tx, ty, content, anchor="start", size=12, extra=""):
        content = content.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return (f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="{size}" text-anchor="{anchor}"'
                f'{extra}>{content}</text>')

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif">', f'<rect width="{width}" height="{height}" fill="white"/>',
           text(10, 22, title, size=15, extra=' font-weight="bold"'),
           text(10, 42, "times Python's multiprocessing (log scale, higher is better): "
                "mp in blue, the bare system calls in grey"),
           ]
    decade = low
    while decade <= high:
        out.append(f'<line x1="{x(decade):.1f}" y1="{top - 6}" x2="{x(decade):.1f}" '
                   f'y2="{height - 40}" stroke="{"#444" if decade == 1 else "#ddd"}"/>')
        out.append(text(x(decade), height - 24, f"{decade:g}x", anchor="middle", size=11))
        decade *= 10
    for index, (name, mp, floor) in enumerate(rows):
        y = top + index * row_height
        out.append(text(label_width - 8, y + 17, name[:52], anchor="end", size=11))
        for value, colour, offset, thickness in ((floor, "#bbb", 3, 8), (mp, "#2a6fdb", 13, 12)):
            if not value:
                continue
            start, end = sorted((x(1.0), x(value)))
            out.append(f'<rect x="{start:.1f}" y="{y + offset}" width="{max(end - start, 1):.1f}" '
                       f'height="{thickness}" fill="{colour}"/>')
        out.append(text(max(x(mp), x(1.0)) + 4, y + 24, f"{mp:.3g}x", size=11))
    out.append("</svg>")
    return "\n".join(out) + "\n"


class background_load:
    """One busy loop per usable CPU at the lowest priority (nice 19), as other work on a
    shared machine would be; stopped when the block ends, whatever ends it."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.children = []

    def __enter__(self):
        if not self.enabled:
            return self
        for cpu in sorted(os.sched_getaffinity(0)):
            self.children.append(subprocess.Popen(
                [sys.executable, "-c", "while True: pass"],
                preexec_fn=lambda cpu=cpu: (os.nice(19), os.sched_setaffinity(0, {cpu}))))
        # SIGTERM ends the run through the `finally` below as Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        return self

    def __exit__(self, *_):
        for child in self.children:
            child.kill()
        for child in self.children:
            child.wait()
        return False


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cmake_cache(build_dir, variable):
    try:
        for line in (build_dir / "CMakeCache.txt").read_text().splitlines():
            if line.startswith(variable + ":"):
                return line.split("=", 1)[1]
    except OSError:
        pass
    return "unknown"


def library_revision(build_dir):
    """The git commit of the mp sources the build directory was configured from."""
    source = cmake_cache(build_dir, "CMAKE_HOME_DIRECTORY")
    if source == "unknown":
        return "unknown commit"
    try:
        rev = subprocess.run(["git", "-C", source, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        # Changes under bench/ do not change what is measured.
        dirty = subprocess.run(["git", "-C", source, "status", "--porcelain",
                                "--untracked-files=no", "--", ".", ":!bench"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"commit {rev}" + (" with uncommitted library changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"


def compiler_version(build_dir):
    compiler = cmake_cache(build_dir, "CMAKE_CXX_COMPILER")
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return compiler


def boost_version(build_dir):
    """Boost's version as CMake found it (its config directory is named Boost-<version>)."""
    if not (build_dir / "bench" / "boost_side").is_file():
        return "not built (no Boost headers found; Debian: libboost-dev)"
    config = cmake_cache(build_dir, "Boost_DIR")
    name = Path(config).name
    return name.replace("Boost-", "") if name.startswith("Boost-") else config


def machine_info(args, scenarios):
    def rounds_of(s):
        text = f"{s.mode} {s.rounds_for('mp', args)}{ROUNDS_UNIT.get(s.mode, '')}"
        python = s.rounds_for("python", args)
        return text + (f" (Python {python})" if python != s.rounds_for("mp", args) else "")

    rounds = ", ".join(dict.fromkeys(rounds_of(s) for s in scenarios))
    python_version = subprocess.run(
        [args.python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=False).stdout.strip()
    return [
        f"- host: {socket.gethostname()}",
        f"- CPU: {cpu_model()}",
        f"- nproc: {os.cpu_count()} (usable here: {len(os.sched_getaffinity(0))})",
        f"- kernel: {platform.system()} {platform.release()}",
        f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "- start method: fork unless the scenario names another (spawn-method, "
        "forkserver-method); Python: get_context('fork') likewise, and for lock the default "
        "context",
        f"- Python: {python_version} ({args.python})",
        f"- Boost: {boost_version(args.build_dir)}",
        f"- mp: {library_revision(args.build_dir)}, "
        f"{cmake_cache(args.build_dir, 'CMAKE_BUILD_TYPE')} build, "
        f"{compiler_version(args.build_dir)}",
        f"- timed rounds per run: {rounds} (and a tenth as many warm-up rounds before); "
        f"runs per cell: {args.repeat}, interleaved; each cell is the median of its runs",
        f"- pinned rows: every process on CPU {args.pin_cpu}",
        f"- extra environment: {' '.join(args.env) if args.env else 'none'}",
        "- background load: " + ("one busy loop per usable CPU at nice 19 (--background-load)"
                                 if args.background_load else "none"),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds per run, for every implementation alike (messages "
                             "for throughput, batches of 1000 pairs for lock, increments per "
                             "process for increments, items for the queue rates); default 1000 "
                             "for spawn, 20000 for pingpong, event and queue-rt, 2000 for "
                             "throughput and lock, 200000 for increments and queue4k (Python "
                             "50000), 2000000 for queue8 and queue-mpmc (Python 200000), 30 for "
                             "queue-big (Python 10)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs per implementation and scenario; default 5")
    parser.add_argument("--build-dir", type=Path, default=SOURCE_DIR / "build" / "release",
                        help="the CMake build directory holding bench/mp_side and bench/mp_floor; "
                             "default build/release")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python interpreter for the baselines; default this one")
    parser.add_argument("--pin-cpu", type=int, default=min(os.sched_getaffinity(0)),
                        help="the CPU for the pinned rows; default the lowest usable")
    parser.add_argument("--scenario", action="append",
                        choices=list(dict.fromkeys(s.mode for s in SCENARIOS)),
                        help="run only these scenarios (repeatable); default all")
    parser.add_argument("--output", default=None,
                        help="results file; default bench/results/<date>-<hostname>.md; "
                             "'-' writes none")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set this in the environment of every run, all sides alike "
                             "(repeatable), e.g. LD_BIND_NOW=1")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument("--background-load", action="store_true",
                        help="run everything beside one busy loop per usable CPU at the lowest "
                             "priority (nice 19), started and stopped by this script: a shared "
                             "machine's other work")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if a target is missed")
    args = parser.parse_args()
    if (args.rounds is not None and args.rounds < 1) or args.repeat < 1:
        parser.error("--rounds and --repeat must be positive")
    args.build_dir = args.build_dir.resolve()
    args.environment = dict(os.environ)
    for assignment in args.env:
        name, equals, value = assignment.partition("=")
        if not name or not equals:
            parser.error(f"--env wants NAME=VALUE, not '{assignment}'")
        args.environment[name] = value
    for binary in ("mp_side", "mp_floor"):
        if not (args.build_dir / "bench" / binary).is_file():
            parser.error(f"{args.build_dir / 'bench' / binary} not found: build first "
                         "(cmake --preset release && cmake --build --preset release)")
    # Optional: built only where Boost's headers were found.
    args.have_boost = (args.build_dir / "bench" / "boost_side").is_file()

    scenarios = [s for s in SCENARIOS if not args.scenario or s.mode in args.scenario]
    info = machine_info(args, scenarios)
    with background_load(args.background_load):
        for repetition in range(args.repeat):
            for s in scenarios:
                for implementation in s.implementations(args):
                    value = run_once(s, implementation, args)
                    s.values[implementation].append(value)
                    print(f"[{repetition + 1}/{args.repeat}] {s.name:<50} {implementation:<6} "
                          f"{fmt(s, value)}", file=sys.stderr, flush=True)

    results, all_passed = table(scenarios)
    print(results)
    if args.output != "-":
        now = datetime.datetime.now()
        output = Path(args.output) if args.output else (
            BENCH_DIR / "results" / f"{now:%Y-%m-%d}-{socket.gethostname()}.md")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(
            f"# Side-by-side results, {now:%Y-%m-%d %H:%M}\n\n"
            f"Command: `{' '.join(['bench/side_by_side/run.py'] + sys.argv[1:])}`\n\n"
            + "\n".join(info) + "\n\n" + results + "\n\n" + LEGEND + "\n\n"
            "## Every run\n\n" + raw_values(scenarios) + "\n")
        picture = output.with_suffix(".svg")
        picture.write_text(chart(scenarios, f"mp beside Python's multiprocessing, {now:%Y-%m-%d}"
                                 + (" (background load)" if args.background_load else "")))
        print(f"\nwritten to {output} and {picture}", file=sys.stderr)
    return 1 if args.check and not all_passed else 0


if __name__ == "__main__":
    sys.exit(main())
