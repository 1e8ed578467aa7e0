# SPDX-License-Identifier: MIT
"""Python baseline of the queue-rt scenario: a small int there and back through
two multiprocessing.Queue()s with a child: the parent puts to q1, the child
gets it and puts it to q2, the parent gets it; fork start method. Prints the
median round trip in microseconds.

Usage: queue_roundtrip.py [rounds]   (rounds/10, at least 1, untimed warm-up rounds first)
"""
import multiprocessing
import statistics
import sys
import time


def echo(there, back, count):
    for _ in range(count):
        back.put(there.get())


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    ctx = multiprocessing.get_context("fork")
    there, back = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=echo, args=(there, back, warmup + rounds))
    p.start()
    times = []
    for i in range(warmup + rounds):
        start = time.perf_counter_ns()
        there.put(i)
        reply = back.get()
        end = time.perf_counter_ns()
        if reply != i:
            sys.exit("bad reply")
        if i >= warmup:
            times.append((end - start) / 1e3)
    p.join()
    if p.exitcode != 0:
        sys.exit("child failed")
    print(f"{statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
