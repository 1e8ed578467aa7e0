# SPDX-License-Identifier: MIT
"""Python baseline of the queue4k scenario: a child put()s 4096-byte bytes
objects (the first 8 bytes a sequence number) into a multiprocessing.Queue(),
the parent get()s them; fork start method. Prints the items per second the
parent took over the timed items, in millions.

Usage: queue_4k.py [rounds]   (rounds = timed items; rounds/10, at least 1,
                               untimed warm-up items first)
"""
import multiprocessing
import sys
import time

ITEM_SIZE = 4096


def producer(q, count):
    tail = b"x" * (ITEM_SIZE - 8)
    for i in range(count):
        q.put(i.to_bytes(8, "little") + tail)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=producer, args=(q, warmup + rounds))
    p.start()
    get = q.get
    start = time.perf_counter_ns()
    for i in range(warmup + rounds):
        if i == warmup:
            start = time.perf_counter_ns()
        item = get()
        if len(item) != ITEM_SIZE or int.from_bytes(item[:8], "little") != i:
            sys.exit("bad item")
    elapsed_ns = time.perf_counter_ns() - start
    p.join()
    if p.exitcode != 0:
        sys.exit("child failed")
    print(f"{rounds / elapsed_ns * 1e3:.3f}")


if __name__ == "__main__":
    main()
