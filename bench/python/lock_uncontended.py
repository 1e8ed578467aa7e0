# SPDX-License-Identifier: MIT
"""Python baseline of the lock scenario: uncontended acquire() + release() of a
multiprocessing.Lock() (default context) in one process, in a tight loop.
Each round times a batch of 1000 pairs; prints the median nanoseconds per pair.

Usage: lock_uncontended.py [rounds]   (rounds = timed batches; rounds/10, at least 1,
                                       untimed warm-up batches first)
"""
import multiprocessing
import statistics
import sys
import time

BATCH = 1000


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    lock = multiprocessing.Lock()
    # Bound methods looked up once, so the loop measures the lock, not attribute lookups.
    acquire, release = lock.acquire, lock.release
    batch = range(BATCH)
    times = []
    for i in range(warmup + rounds):
        start = time.perf_counter_ns()
        for _ in batch:
            acquire()
            release()
        end = time.perf_counter_ns()
        if i >= warmup:
            times.append((end - start) / BATCH)
    print(f"{statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
