# SPDX-License-Identifier: MIT
"""Python baseline of the pingpong scenario: Connection.send() / recv() of a
small int there and back with an echoing child over Pipe(), fork start method.
Prints the median round trip in microseconds.

Usage: pipe_roundtrip.py [rounds]   (rounds/10, at least 1, untimed warm-up rounds first)
"""
import multiprocessing
import statistics
import sys
import time


def echo(conn):
    while True:
        value = conn.recv()
        if value is None:
            return
        conn.send(value)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=echo, args=(child_end,))
    p.start()
    child_end.close()
    times = []
    for i in range(warmup + rounds):
        start = time.perf_counter_ns()
        parent_end.send(i)
        reply = parent_end.recv()
        end = time.perf_counter_ns()
        if reply != i:
            sys.exit("bad reply")
        if i >= warmup:
            times.append((end - start) / 1e3)
    parent_end.send(None)
    p.join()
    if p.exitcode != 0:
        sys.exit("child failed")
    print(f"{statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
