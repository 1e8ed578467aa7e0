# SPDX-License-Identifier: MIT
"""Python baseline of the queue8 scenario: a child put()s small ints into a
multiprocessing.Queue(), the parent get()s them; fork start method. Prints the
items per second the parent took over the timed items, in millions.

Usage: queue_8byte.py [rounds]   (rounds = timed items; rounds/10, at least 1,
                                  untimed warm-up items first)
"""
import multiprocessing
import sys
import time


def producer(q, count):
    for i in range(count):
        q.put(i)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=producer, args=(q, warmup + rounds))
    p.start()
    get = q.get
    start = time.perf_counter_ns()
    for i in range(warmup + rounds):
        if i == warmup:
            start = time.perf_counter_ns()
        if get() != i:
            sys.exit("items out of order")
    elapsed_ns = time.perf_counter_ns() - start
    p.join()
    if p.exitcode != 0:
        sys.exit("child failed")
    print(f"{rounds / elapsed_ns * 1e3:.3f}")


if __name__ == "__main__":
    main()
