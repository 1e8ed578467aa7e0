# SPDX-License-Identifier: MIT
"""Python baseline of the spawn scenario: Process.start() + join() of a trivial
target under the fork start method (or the one named). Prints the median
microseconds.

Usage: process_start.py [rounds] [method]   (rounds/10, at least 1, untimed warm-up rounds first)
"""
import multiprocessing
import statistics
import sys
import time


def noop():
    pass


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    ctx = multiprocessing.get_context(sys.argv[2] if len(sys.argv) > 2 else "fork")
    times = []
    for i in range(warmup + rounds):
        start = time.perf_counter_ns()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        end = time.perf_counter_ns()
        if p.exitcode != 0:
            sys.exit("child failed")
        p.close()
        if i >= warmup:
            times.append((end - start) / 1e3)
    print(f"{statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
