# SPDX-License-Identifier: MIT
"""mpi4py.futures side of the MPI map scenario: MPIPoolExecutor().map of add_one
over `rounds` ints in 8 chunks (chunksize rounds/8 rounded up: 125000 for the
default million), reading every result: a warm-up map, then the median rate of
five timed ones. Prints millions of items per second.

Usage: mpiexec -n 3 /usr/bin/python3 -m mpi4py.futures mpi_futures_map.py [rounds]
"""
import statistics
import sys
import time

from mpi4py.futures import MPIPoolExecutor

CHUNKS = 8


def add_one(x):
    return x + 1


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    chunksize = -(-rounds // CHUNKS)
    data = list(range(rounds))
    rates = []
    with MPIPoolExecutor() as executor:
        for i in range(6):
            start = time.perf_counter_ns()
            count = 0
            for x, r in zip(data, executor.map(add_one, data, chunksize=chunksize)):
                if r != x + 1:
                    sys.exit("wrong result")
                count += 1
            end = time.perf_counter_ns()
            if count != rounds:
                sys.exit("missing results")
            if i > 0:
                rates.append(rounds / ((end - start) / 1e3))
    print(f"{statistics.median(rates):.6f}")


if __name__ == "__main__":
    main()
