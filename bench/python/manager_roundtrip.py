# SPDX-License-Identifier: MIT
"""Python baseline of the manager-rt scenario: a child Process given the proxy
of a Manager().dict() of 1000 int keys calls d.get(k), one request to the
manager's server each; fork start method. The child times the calls and sends
the median back; prints the median round trip in microseconds.

Usage: manager_roundtrip.py [rounds]   (rounds/10, at least 1, untimed warm-up rounds first)
"""
import multiprocessing
import statistics
import sys
import time

KEYS = 1000


def gets(d, out, rounds, warmup):
    times = []
    for i in range(warmup + rounds):
        k = i % KEYS
        start = time.perf_counter_ns()
        value = d.get(k)
        end = time.perf_counter_ns()
        if value != k * k:
            sys.exit("wrong value")
        if i >= warmup:
            times.append((end - start) / 1e3)
    out.send(statistics.median(times))


def main(body=gets):
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        d = manager.dict({k: k * k for k in range(KEYS)})
        result_in, result_out = ctx.Pipe(duplex=False)
        p = ctx.Process(target=body, args=(d, result_out, rounds, warmup))
        p.start()
        result_out.close()
        result = result_in.recv()
        p.join()
        if p.exitcode != 0:
            sys.exit("child failed")
    print(f"{result:.3f}")


if __name__ == "__main__":
    main()
