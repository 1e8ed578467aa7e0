# SPDX-License-Identifier: MIT
"""Python baseline of the thread-apply scenario: pool.apply(square, (i,)) round
trips on multiprocessing.pool.ThreadPool(2). Prints the median round trip in
microseconds.

Usage: thread_pool_apply.py [rounds]   (rounds/10, at least 1, untimed warm-up rounds first)
"""
import statistics
import sys
import time
from multiprocessing.pool import ThreadPool


def square(x):
    return x * x


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    times = []
    with ThreadPool(2) as pool:
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
