# SPDX-License-Identifier: MIT
"""mpi4py.futures side of the MPI roundtrip scenario: submit(add_one, i).result()
round trips on MPIPoolExecutor() (every rank but 0 a worker), one at a time.
Prints the median round trip in microseconds.

Usage: mpiexec -n 3 /usr/bin/python3 -m mpi4py.futures mpi_futures_roundtrip.py [rounds]
(rounds/10, at least 1, untimed warm-up rounds first; the workers are started
by the first of them.)
"""
import statistics
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def add_one(x):
    return x + 1


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    warmup = max(rounds // 10, 1)
    times = []
    with MPIPoolExecutor() as executor:
        for i in range(warmup + rounds):
            start = time.perf_counter_ns()
            r = executor.submit(add_one, i).result()
            end = time.perf_counter_ns()
            if r != i + 1:
                sys.exit("wrong result")
            if i >= warmup:
                times.append((end - start) / 1e3)
    print(f"{statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
