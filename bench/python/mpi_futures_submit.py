# SPDX-License-Identifier: MIT
"""mpi4py.futures side of the MPI submit scenario: MPIPoolExecutor() (every rank
but 0 a worker) submits `rounds` tiny tasks (add_one), then waits for every
result in order, after a warm-up of rounds/10. Prints millions of tasks per
second, from the first submit to the last result.

Usage: mpiexec -n 3 /usr/bin/python3 -m mpi4py.futures mpi_futures_submit.py [rounds]
(rank 0 runs this script; the other ranks serve, and load it as __worker__
to find add_one.)
"""
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def add_one(x):
    return x + 1


def run(executor, count):
    futures = [executor.submit(add_one, i) for i in range(count)]
    for i, f in enumerate(futures):
        if f.result() != i + 1:
            sys.exit("wrong result")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    warmup = max(rounds // 10, 1)
    with MPIPoolExecutor() as executor:
        run(executor, warmup)
        start = time.perf_counter_ns()
        run(executor, rounds)
        end = time.perf_counter_ns()
    print(f"{rounds / ((end - start) / 1e3):.6f}")


if __name__ == "__main__":
    main()
