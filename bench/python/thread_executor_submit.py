# SPDX-License-Identifier: MIT
"""Python baseline of the thread-submit scenario: concurrent.futures.ThreadPoolExecutor(2):
submit `rounds` tiny tasks, then wait for every result (after a warm-up of rounds/10).
Prints millions of tasks per second.

Usage: thread_executor_submit.py [rounds]
"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def square(x):
    return x * x


def run(executor, count):
    futures = [executor.submit(square, i) for i in range(count)]
    for i, f in enumerate(futures):
        if f.result() != i * i:
            sys.exit("wrong result")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with ThreadPoolExecutor(2) as executor:
        run(executor, max(rounds // 10, 1))
        start = time.perf_counter_ns()
        run(executor, rounds)
        end = time.perf_counter_ns()
    print(f"{rounds / ((end - start) / 1e3):.3f}")


if __name__ == "__main__":
    main()
