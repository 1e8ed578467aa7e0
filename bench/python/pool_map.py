# SPDX-License-Identifier: MIT
"""Python baseline of the pool-map scenario: multiprocessing.Pool(2).map of x*x
over `rounds` ints with the default chunksize: a warm-up map, then the median
rate of five timed ones; fork start method. Prints millions of items per second.

Usage: pool_map.py [rounds] [chunksize]   (chunksize: default Python's rule)
"""
import multiprocessing
import statistics
import sys
import time


def square(x):
    return x * x


def process_pool():
    return multiprocessing.get_context("fork").Pool(2)


def main(make_pool=process_pool):
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    chunksize = int(sys.argv[2]) if len(sys.argv) > 2 else None
    data = list(range(rounds))
    rates = []
    with make_pool() as pool:
        for i in range(6):
            start = time.perf_counter_ns()
            out = pool.map(square, data, chunksize)
            end = time.perf_counter_ns()
            if len(out) != rounds or out[-1] != data[-1] ** 2:
                sys.exit("wrong results")
            if i > 0:
                rates.append(rounds / ((end - start) / 1e3))
    print(f"{statistics.median(rates):.3f}")


if __name__ == "__main__":
    main()
