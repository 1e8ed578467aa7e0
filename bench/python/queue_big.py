# SPDX-License-Identifier: MIT
"""Python baseline of the queue-big scenario: a child put()s one 64 MiB bytes
object, again and again, into a multiprocessing.Queue(maxsize=2), the parent
get()s each; fork start method. Prints GB/s (10^9 bytes per second) over the
timed items.

Usage: queue_big.py [rounds]   (rounds = timed items; rounds/10, at least 1,
                                untimed warm-up items first)
"""
import multiprocessing
import sys
import time

ITEM_SIZE = 64 << 20


def producer(q, count):
    item = b"x" * ITEM_SIZE
    for _ in range(count):
        q.put(item)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    ctx = multiprocessing.get_context("fork")
    # Bounded, as mp's side is, so that the producer cannot run far ahead.
    q = ctx.Queue(maxsize=2)
    p = ctx.Process(target=producer, args=(q, warmup + rounds))
    p.start()
    start = time.perf_counter_ns()
    for i in range(warmup + rounds):
        if i == warmup:
            start = time.perf_counter_ns()
        if len(q.get()) != ITEM_SIZE:
            sys.exit("bad item size")
    elapsed_ns = time.perf_counter_ns() - start
    p.join()
    if p.exitcode != 0:
        sys.exit("child failed")
    print(f"{rounds * ITEM_SIZE / elapsed_ns:.3f}")


if __name__ == "__main__":
    main()
