# SPDX-License-Identifier: MIT
"""Python baseline of the thread-map1 scenario: multiprocessing.pool.ThreadPool(2).map
of x*x over `rounds` ints with chunksize 1: a warm-up map, then the median rate of
five timed ones. Prints millions of items per second.

Usage: thread_pool_map1.py [rounds]
"""
import statistics
import sys
import time
from multiprocessing.pool import ThreadPool


def square(x):
    return x * x


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    data = list(range(rounds))
    rates = []
    with ThreadPool(2) as pool:
        for i in range(6):
            start = time.perf_counter_ns()
            out = pool.map(square, data, 1)
            end = time.perf_counter_ns()
            if len(out) != rounds or out[-1] != data[-1] ** 2:
                sys.exit("wrong results")
            if i > 0:
                rates.append(rounds / ((end - start) / 1e3))
    print(f"{statistics.median(rates):.3f}")


if __name__ == "__main__":
    main()
