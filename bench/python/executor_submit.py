# SPDX-License-Identifier: MIT
"""Python baseline of the executor-submit scenario: ProcessPoolExecutor(2)
submits `rounds` tiny tasks, then waits for every result (after a warm-up of
rounds/10); fork start method. Prints millions of tasks per second.

Usage: executor_submit.py [rounds]
"""
import concurrent.futures
import multiprocessing
import sys
import time


def square(x):
    return x * x


def run(executor, count):
    futures = [executor.submit(square, i) for i in range(count)]
    for i, f in enumerate(futures):
        if f.result() != i * i:
            sys.exit("wrong result")


def process_executor():
    return concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))


def main(make_executor=process_executor):
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    warmup = max(rounds // 10, 1)
    with make_executor() as executor:
        run(executor, warmup)
        start = time.perf_counter_ns()
        run(executor, rounds)
        end = time.perf_counter_ns()
    print(f"{rounds / ((end - start) / 1e3):.5f}")


if __name__ == "__main__":
    main()
