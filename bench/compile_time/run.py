#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compile time of mp programs beside a program of the same size on <thread>/<future>.

Compiles, in turn, the README example (taken from README.md's first C++ block, so it is
always the one users see), a few examples and bench/compile_time/threads.cpp, each
`--repeat` times, and reports the median CPU time (user + system of the compiler) and the
ratio to threads.cpp. Ratios, because the machines are shared: CPU time moves with the load
much less than wall time, and each ratio pairs runs made moments apart. The target (issue
14): the README example within 2x of threads.cpp.

  bench/compile_time/run.py [--build-dir build/release] [--repeat 7] [--cxx g++] [--flags=-O2]
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXAMPLES = ["hello", "pipe_sender_receiver", "pool_squares", "queue_pipeline", "executor_powers"]
TARGET = 2.0


def readme_example(folder):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    match = re.search(r"```cpp\n(.*?)```", text, re.S)
    if not match:
        sys.exit("README.md has no ```cpp block")
    path = os.path.join(folder, "readme_example.cpp")
    with open(path, "w", encoding="utf-8") as f:
        f.write(match.group(1))
    return path


def cpu_seconds(command):
    """Runs `command` and returns the CPU seconds (user + system) of its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit("compile failed: " + " ".join(command) + "\n" + result.stderr[-4000:])
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build", "release"),
                        help="a configured build (for the generated mp/export.hpp)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cxx", default="g++")
    parser.add_argument("--flags", default="-O2", help="extra compiler flags, one string")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the README example misses the 2x target")
    args = parser.parse_args()

    generated = os.path.join(args.build_dir, "include")
    if not os.path.exists(os.path.join(generated, "mp", "export.hpp")):
        sys.exit(f"{generated}/mp/export.hpp is missing: configure a build first "
                 "(cmake --preset release) or pass --build-dir")
    with tempfile.TemporaryDirectory() as folder:
        programs = [("README example", readme_example(folder))]
        programs += [(f"examples/{name}", os.path.join(ROOT, "examples", f"{name}.cpp"))
                     for name in EXAMPLES]
        yardstick = os.path.join(ROOT, "bench", "compile_time", "threads.cpp")
        base = [args.cxx, "-std=c++20", *args.flags.split(), "-c", "-o", os.devnull]
        includes = ["-I", os.path.join(ROOT, "include"), "-I", generated]
        times = {name: [] for name, _ in programs}
        times["threads.cpp"] = []
        ratios = {name: [] for name, _ in programs}
        for _ in range(args.repeat):
            for name, path in programs:
                ours = cpu_seconds(base + includes + [path])
                theirs = cpu_seconds(base + [yardstick])
                times[name].append(ours)
                times["threads.cpp"].append(theirs)
                ratios[name].append(ours / theirs)

    print(f"compiler: {args.cxx} {args.flags}; {args.repeat} runs each, median CPU seconds")
    print(f"{'program':28} {'CPU s':>7} {'vs threads.cpp':>15}")
    for name, _ in programs:
        print(f"{name:28} {statistics.median(times[name]):7.2f} "
              f"{statistics.median(ratios[name]):14.2f}x")
    print(f"{'threads.cpp':28} {statistics.median(times['threads.cpp']):7.2f} {'1.00x':>15}")
    readme = statistics.median(ratios["README example"])
    verdict = "met" if readme <= TARGET else "MISSED"
    print(f"target: README example <= {TARGET:.1f}x threads.cpp: {verdict} ({readme:.2f}x)")
    return 1 if args.check and readme > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
