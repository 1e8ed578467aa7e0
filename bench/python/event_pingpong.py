# SPDX-License-Identifier: MIT
"""Python baseline of the event scenario: ping-pong of two processes over two
multiprocessing.Event()s, fork start method. Each round the parent sets e1 and
waits for e2 (then clears it); the child waits for e1, clears it and sets e2.
Prints the median round trip in microseconds.

Usage: event_pingpong.py [rounds]   (rounds/10, at least 1, untimed warm-up rounds first)
"""
import multiprocessing
import statistics
import sys
import time


def responder(e1, e2, count):
    for _ in range(count):
        e1.wait()
        e1.clear()
        e2.set()


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    ctx = multiprocessing.get_context("fork")
    e1, e2 = ctx.Event(), ctx.Event()
    p = ctx.Process(target=responder, args=(e1, e2, warmup + rounds))
    p.start()
    times = []
    for i in range(warmup + rounds):
        start = time.perf_counter_ns()
        e1.set()
        e2.wait()
        e2.clear()
        end = time.perf_counter_ns()
        if i >= warmup:
            times.append((end - start) / 1e3)
    p.join()
    if p.exitcode != 0:
        sys.exit("child failed")
    print(f"{statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
