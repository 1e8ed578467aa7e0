# SPDX-License-Identifier: MIT
"""Python baseline of the pool-apply scenario: pool.apply(square, (i,)) round
trips on multiprocessing.Pool(2); fork start method. Prints the median round
trip in microseconds.

Usage: pool_apply.py [rounds]   (rounds/10, at least 1, untimed warm-up rounds first)
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
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    times = []
    with make_pool() as pool:
        for i in range(warmup + rounds):
            start = time.perf_counter_ns()
            r = pool.apply(square, (i,))
            end = time.perf_counter_ns()
            if r != i * i:
                sys.exit("wrong result")
            if i >= warmup:
                times.append((end - start) / 1e3)
    print(f"{statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
