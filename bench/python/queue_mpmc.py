# SPDX-License-Identifier: MIT
"""Python baseline of the queue-mpmc scenario: four producer processes put()
small ints into one multiprocessing.Queue(), four consumer processes get() them;
fork start method. Each producer puts rounds/4 (rounded up) items and then None;
each consumer takes items until it takes a None. The clock runs from the start
line (a Barrier of all nine processes) to the last consumer's None. Prints the
items per second, all consumers together, in millions.

Usage: queue_mpmc.py [rounds]   (rounds = timed items in all; the parent first
                                 puts and gets rounds/10, at least 1, untimed items)
"""
import multiprocessing
import sys
import time

SIDES = 4


def producer(q, start_line, count):
    start_line.wait()
    put = q.put
    for i in range(count):
        put(i)
    put(None)


def consumer(q, start_line, index, end_ns, received):
    start_line.wait()
    get = q.get
    count = 0
    while get() is not None:
        count += 1
    # CLOCK_MONOTONIC is one clock for all processes, so the parent can compare.
    end_ns[index] = time.monotonic_ns()
    received[index] = count


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    for i in range(warmup):
        q.put(i)
        q.get()
    per_producer = (rounds + SIDES - 1) // SIDES
    start_line = ctx.Barrier(2 * SIDES + 1)
    end_ns = ctx.RawArray("q", SIDES)
    received = ctx.RawArray("q", SIDES)
    children = [ctx.Process(target=consumer, args=(q, start_line, c, end_ns, received))
                for c in range(SIDES)]
    children += [ctx.Process(target=producer, args=(q, start_line, per_producer))
                 for _ in range(SIDES)]
    for p in children:
        p.start()
    start_line.wait()
    start = time.monotonic_ns()
    for p in children:
        p.join()
        if p.exitcode != 0:
            sys.exit("child failed")
    if sum(received) != per_producer * SIDES:
        sys.exit("lost an item")
    print(f"{per_producer * SIDES / (max(end_ns) - start) * 1e3:.3f}")


if __name__ == "__main__":
    main()
