# SPDX-License-Identifier: MIT
"""Python baseline of the pool-cpu scenario: the primes below `rounds` counted
in 40 ranges, serially and with Pool(cpu_count()).map(chunksize=1); fork start
method. Prints the speedup, serial time over pool time.

Usage: pool_cpu.py [limit]
"""
import multiprocessing
import sys
import time


def is_prime(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def count_primes(bounds):
    return sum(1 for n in range(*bounds) if is_prime(n))


def main():
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    ranges = [(limit * i // 40, limit * (i + 1) // 40) for i in range(40)]
    with multiprocessing.get_context("fork").Pool(multiprocessing.cpu_count()) as pool:
        pool.map(count_primes, ranges, 1)
        start = time.perf_counter_ns()
        serial = sum(count_primes(r) for r in ranges)
        middle = time.perf_counter_ns()
        parallel = sum(pool.map(count_primes, ranges, 1))
        end = time.perf_counter_ns()
    if serial != parallel:
        sys.exit("the counts differ")
    print(f"{(middle - start) / (end - middle):.3f}")


if __name__ == "__main__":
    main()
