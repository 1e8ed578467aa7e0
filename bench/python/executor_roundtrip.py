# SPDX-License-Identifier: MIT
"""Python baseline of the executor-rt scenario: submit(square, i).result()
round trips on ProcessPoolExecutor(2); fork start method. Prints the median
round trip in microseconds.

Usage: executor_roundtrip.py [rounds]   (rounds/10, at least 1, untimed warm-up rounds first)
"""
import concurrent.futures
import multiprocessing
import statistics
import sys
import time


def square(x):
    return x * x


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    times = []
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
        for i in range(warmup + rounds):
            start = time.perf_counter_ns()
            r = executor.submit(square, i).result()
            end = time.perf_counter_ns()
            if r != i * i:
                sys.exit("wrong result")
            if i >= warmup:
                times.append((end - start) / 1e3)
    print(f"{statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
