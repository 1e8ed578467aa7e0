#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""MPI side by side: runs each scenario through mp's executor on MPI ranks
(mp_mpi_side), mpi4py.futures' MPIPoolExecutor (bench/python/mpi_futures_*.py,
under /usr/bin/python3) and bare MPI messages (mp_mpi_floor), each as its own
`mpiexec -n 3` (rank 0 the client, ranks 1 and 2 the workers), over shared
memory (Open MPI's default BTLs) and forced onto TCP (--mca btl tcp,self),
--repeat times, interleaved so that drift on a shared machine hits all alike;
prints a markdown table of the medians with the ratios mp/mpi4py and mp/floor
and each target marked PASS or FAIL, and writes it with the machine's details
and every run to bench/results/<date>-<hostname>-mpi.md.

Usage: run.py [--build-dir DIR] [--repeat R] [--transport shm|tcp|both] [--output FILE|-]
              [--rounds N] [--scenario NAME] [--side NAME] [--mpiexec PATH] [--python PATH]
              [--check]
"""
import argparse
import datetime
import importlib.util
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
SIDES = ("mp", "mpi4py", "floor")
TRANSPORTS = ("shm", "tcp")
# Three ranks on any machine: the client and two workers. The CI machine and the reference VM
# have two cores, so mpiexec must be told it may put more ranks than cores on one node.
RANKS = 3
# Debian's mpi4py is packaged for the system interpreter, not for a pyenv or venv python3 that
# may come first on PATH.
DEFAULT_PYTHON = "/usr/bin/python3"
# mpiexec refuses to run as root without both of these; CI and the reference VM run as root.
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}

# What each program prints, by scenario kind: (unit, lower is better).
KINDS = {
    "latency": ("µs", True),
    "rate": ("M/s", False),  # millions of tasks (or items) per second
}


def side_by_side_helpers():
    """The machine-description helpers of side_by_side/run.py (CPU model, the build's commit
    and compiler), loaded from its file: one copy of them for both tables."""
    spec = importlib.util.spec_from_file_location("side_by_side_run",
                                                  BENCH_DIR / "side_by_side" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Target:
    """`ratio op bound` on the ratio of the medians as written (mp over mpi4py or the floor)."""
    ratio: str  # "mp/mpi4py" or "mp/floor"
    op: str  # "<=" or ">="
    bound: float
    note: str = ""  # what the bound means, where `ratio op bound` does not say it plainly

    def value(self, medians):
        top, bottom = self.ratio.split("/")
        if medians.get(top) is None or not medians.get(bottom):
            return None  # not run, or a median of 0 (too short a run)
        return medians[top] / medians[bottom]

    def passed(self, medians):
        value = self.value(medians)
        if value is None:
            return None
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def describe(self, medians):
        text = f"{self.ratio} {self.op} {self.bound:g}" + (f" ({self.note})" if self.note else "")
        passed = self.passed(medians)
        return text + (": n/a" if passed is None else f": {'PASS' if passed else 'FAIL'}")


@dataclass
class Scenario:
    name: str
    mode: str  # argv[1] of mp_mpi_side and mp_mpi_floor, and what --scenario selects
    python_script: str
    kind: str  # a key of KINDS
    rounds: int  # timed rounds (tasks, round trips, items per map) unless --rounds says otherwise
    targets: tuple = ()
    values: dict = field(default_factory=dict)  # (transport, side) -> [one value per run]

    def median(self, transport, side):
        runs = self.values.get((transport, side))
        return statistics.median(runs) if runs else None


# The MPI backend's targets: mp at least 10x mpi4py.futures' task and map throughput; a round
# trip at least 10x faster than mpi4py.futures' and within 2x of the bare MPI ping-pong.
SCENARIOS = (
    Scenario("submit: 20k tiny tasks, then their results", "submit", "mpi_futures_submit.py",
             "rate", 20_000, (Target("mp/mpi4py", ">=", 10),)),
    Scenario("roundtrip: submit(f, x).result()", "roundtrip", "mpi_futures_roundtrip.py",
             "latency", 2000,
             (Target("mp/mpi4py", "<=", 0.1, "10x faster"), Target("mp/floor", "<=", 2))),
    Scenario("map: 1M ints in 8 chunks", "map", "mpi_futures_map.py", "rate", 1_000_000,
             (Target("mp/mpi4py", ">=", 10),)),
)


def mpiexec_prefix(args, transport):
    # --bind-to none: with more ranks than cores Open MPI would not bind anyway; saying so keeps
    # every side under the same placement whatever the machine. Shared memory is Open MPI's own
    # choice (its default BTLs take vader between ranks of one node); TCP is forced, with `self`
    # for a rank's messages to itself.
    prefix = [args.mpiexec, "-n", str(RANKS), "--oversubscribe", "--bind-to", "none"]
    if transport == "tcp":
        prefix += ["--mca", "btl", "tcp,self"]
    return prefix


def command(scenario, side, transport, args):
    rounds = str(args.rounds or scenario.rounds)
    if side == "mp":
        program = [str(args.build_dir / "bench" / "mp_mpi_side"), scenario.mode, rounds]
    elif side == "floor":
        program = [str(args.build_dir / "bench" / "mp_mpi_floor"), scenario.mode, rounds]
    else:
        # Rank 0 runs the script as __main__; the other ranks serve MPIPoolExecutor's tasks.
        program = [args.python, "-m", "mpi4py.futures",
                   str(BENCH_DIR / "python" / scenario.python_script), rounds]
    return mpiexec_prefix(args, transport) + program


def stop(run):
    """Ends an mpiexec and its ranks: SIGTERM to its process group (mpiexec passes it on to the
    ranks it started), then SIGKILL to whatever is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(run.pid, sig)
        except ProcessLookupError:
            return
        try:
            run.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            pass


def run_once(scenario, side, transport, args):
    argv = command(scenario, side, transport, args)
    # A session of its own, so that a timeout or Ctrl-C can end mpiexec with all its ranks.
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=args.environment, start_new_session=True)
    try:
        stdout, stderr = run.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        stop(run)
        stdout, stderr = run.communicate()
        stderr += f"\n(killed after {args.timeout:g} s)"
    except BaseException:
        stop(run)
        raise
    if run.returncode != 0 or not stdout.split():
        sys.exit(f"run.py: {' '.join(argv)} failed ({run.returncode}):\n{stderr}")
    return float(stdout.split()[-1])


def number(value):
    """Three significant digits, thousands separated: rates here span 0.003 to 500 M/s."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def fmt(scenario, value):
    return "n/a" if value is None else f"{number(value)} {KINDS[scenario.kind][0]}"


def ratio(medians, name):
    top, bottom = name.split("/")
    if medians.get(top) is None or not medians.get(bottom):
        return "n/a"
    return number(medians[top] / medians[bottom])


def table(scenarios, transports):
    lines = ["| scenario | transport | mp | mpi4py | floor | mp/mpi4py | mp/floor | targets |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    all_passed = True
    for transport in transports:
        for s in scenarios:
            medians = {side: s.median(transport, side) for side in SIDES}
            all_passed = all_passed and all(t.passed(medians) is not False for t in s.targets)
            cells = [fmt(s, medians[side]) for side in SIDES]
            cells += [ratio(medians, "mp/mpi4py"), ratio(medians, "mp/floor")]
            marks = "; ".join(t.describe(medians) for t in s.targets) or "none (reference)"
            lines.append(f"| {s.name} | {transport} | {' | '.join(cells)} | {marks} |")
    return "\n".join(lines), all_passed


LEGEND = ("Round trips in µs (lower is better); rates in M/s = 10^6 tasks or items per second "
          "(higher is better). The ratio columns divide the medians as written: for the rates, "
          "mp/mpi4py above 1 means mp is faster; for the round trip, mp/mpi4py below 1 means mp "
          "is faster and mp/floor above 1 is what mp adds to a bare MPI ping-pong. Each run is "
          "its own `mpiexec -n 3` (rank 0 the client, ranks 1 and 2 the workers); shm: Open "
          "MPI's default BTLs (vader between ranks of one node), tcp: `--mca btl tcp,self`. "
          "Targets: mp >= 10x mpi4py.futures' rate for submit and map; a round trip >= 10x "
          "faster than mpi4py.futures' and within 2x of the floor's ping-pong.")


def raw_values(scenarios, transports):
    lines = ["| scenario | transport | side | runs |", "|---|---|---|---|"]
    for transport in transports:
        for s in scenarios:
            for side in SIDES:
                runs = s.values.get((transport, side))
                if runs:
                    lines.append(f"| {s.name} | {transport} | {side} | "
                                 f"{', '.join(number(v) for v in runs)} |")
    return "\n".join(lines)


def first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def machine_info(args, scenarios):
    helpers = side_by_side_helpers()
    rounds = ", ".join(f"{s.mode} {args.rounds or s.rounds}" for s in scenarios)
    python = first_line([args.python, "-c", "import platform, mpi4py; "
                         "print(platform.python_version(), 'mpi4py', mpi4py.__version__)"])
    return [
        f"- host: {socket.gethostname()}",
        f"- CPU: {helpers.cpu_model()}",
        f"- nproc: {os.cpu_count()} (usable here: {len(os.sched_getaffinity(0))})",
        f"- kernel: {platform.system()} {platform.release()}",
        f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- MPI: {first_line([args.mpiexec, '--version'])}; "
        f"`{' '.join(mpiexec_prefix(args, 'shm'))}` (tcp adds `--mca btl tcp,self`)",
        f"- Python: {python} ({args.python})",
        f"- mp: {helpers.library_revision(args.build_dir)}, "
        f"{helpers.cmake_cache(args.build_dir, 'CMAKE_BUILD_TYPE')} build, "
        f"{helpers.compiler_version(args.build_dir)}",
        f"- timed rounds per run: {rounds} (round trips, tasks, items per map; a tenth as many "
        f"warm-up rounds before, one warm-up map); runs per cell: {args.repeat}, interleaved; "
        f"each cell is the median of its runs",
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, default=SOURCE_DIR / "build" / "release",
                        help="the CMake build directory holding bench/mp_mpi_side and "
                             "bench/mp_mpi_floor; default build/release")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs per side, scenario and transport; default 5")
    parser.add_argument("--transport", choices=("shm", "tcp", "both"), default="both",
                        help="shared memory (Open MPI's default BTLs), TCP (--mca btl tcp,self) "
                             "or both, each a row of its own; default both")
    parser.add_argument("--output", default=None,
                        help="results file; default bench/results/<date>-<hostname>-mpi.md; "
                             "'-' writes none")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds per run, for every side alike: tasks for submit "
                             "(default 20000), round trips (2000), items per map (1000000)")
    parser.add_argument("--scenario", action="append", choices=[s.mode for s in SCENARIOS],
                        help="run only these scenarios (repeatable); default all")
    parser.add_argument("--side", action="append", choices=SIDES,
                        help="run only these sides (repeatable), e.g. before mp_mpi_side "
                             "builds; default all")
    parser.add_argument("--mpiexec", default="mpiexec", help="default mpiexec from PATH")
    parser.add_argument("--python", default=DEFAULT_PYTHON,
                        help=f"the interpreter with mpi4py; default {DEFAULT_PYTHON}")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if a target is missed")
    args = parser.parse_args()
    if (args.rounds is not None and args.rounds < 1) or args.repeat < 1:
        parser.error("--rounds and --repeat must be positive")
    args.build_dir = args.build_dir.resolve()
    args.environment = dict(os.environ, **MPI_ENV)
    sides = [side for side in SIDES if not args.side or side in args.side]
    for side, binary in (("mp", "mp_mpi_side"), ("floor", "mp_mpi_floor")):
        if side in sides and not (args.build_dir / "bench" / binary).is_file():
            parser.error(f"{args.build_dir / 'bench' / binary} not found: build it (it needs "
                         "mp::mpi, which CMake builds where it finds MPI), or leave --side "
                         f"{side} out")
    if "mpi4py" in sides and subprocess.run([args.python, "-c", "import mpi4py.futures"],
                                            capture_output=True, check=False).returncode != 0:
        parser.error(f"{args.python} cannot import mpi4py.futures (Debian: python3-mpi4py)")
    transports = TRANSPORTS if args.transport == "both" else (args.transport,)

    scenarios = [s for s in SCENARIOS if not args.scenario or s.mode in args.scenario]
    info = machine_info(args, scenarios)
    for repetition in range(args.repeat):
        for transport in transports:
            for s in scenarios:
                for side in sides:
                    value = run_once(s, side, transport, args)
                    s.values.setdefault((transport, side), []).append(value)
                    print(f"[{repetition + 1}/{args.repeat}] {s.mode:<9} {transport} {side:<6} "
                          f"{fmt(s, value)}", file=sys.stderr, flush=True)

    results, all_passed = table(scenarios, transports)
    print(results)
    if args.output != "-":
        now = datetime.datetime.now()
        output = Path(args.output) if args.output else (
            BENCH_DIR / "results" / f"{now:%Y-%m-%d}-{socket.gethostname()}-mpi.md")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(
            f"# MPI side-by-side results, {now:%Y-%m-%d %H:%M}\n\n"
            f"Command: `{' '.join(['bench/mpi/run.py'] + sys.argv[1:])}`\n\n"
            + "\n".join(info) + "\n\n" + results + "\n\n" + LEGEND + "\n\n"
            "## Every run\n\n" + raw_values(scenarios, transports) + "\n")
        print(f"\nwritten to {output}", file=sys.stderr)
    return 1 if args.check and not all_passed else 0


if __name__ == "__main__":
    sys.exit(main())
