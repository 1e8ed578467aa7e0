# SPDX-License-Identifier: MIT
"""Python baseline of the manager-batch scenario: a child Process given the
proxy of a Manager().dict() calls d.update() with a dict of 10,000 int pairs
(the same keys each time, the call's number as the value), `rounds` times;
fork start method. Prints the child's rate over the timed calls, millions of
items per second.

Usage: manager_batch.py [rounds]   (rounds/10, at least 1, untimed warm-up calls first)
"""
import sys
import time

from manager_roundtrip import main

BATCH = 10_000


def updates(d, out, rounds, warmup):
    start = time.perf_counter_ns()
    for i in range(warmup + rounds):
        if i == warmup:
            start = time.perf_counter_ns()
        d.update({k: i for k in range(BATCH)})
    elapsed_us = (time.perf_counter_ns() - start) / 1e3
    last = warmup + rounds - 1
    if d.get(0) != last or d.get(BATCH - 1) != last or len(d) != BATCH:
        sys.exit("wrong contents")
    out.send(rounds * BATCH / elapsed_us)


if __name__ == "__main__":
    main(updates)
