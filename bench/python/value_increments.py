# SPDX-License-Identifier: MIT
"""Python baseline of the increments scenario: the parent and a child each add
1 to one multiprocessing.Value('i') `rounds` times, each increment under the
value's lock (`with v.get_lock(): v.value += 1`), each process on its own CPU;
fork start method. Prints the total timed increments per second, in millions.

Usage: value_increments.py [rounds]   (rounds = timed increments per process; each
                                       process first makes rounds/10, at least 1,
                                       untimed ones, then both start together)
"""
import multiprocessing
import os
import sys
import time


def add(v, count):
    for _ in range(count):
        with v.get_lock():
            v.value += 1


def pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def child(v, warmup, rounds, ready, go, child_end, cpu):
    pin(cpu)
    add(v, warmup)
    ready.set()
    go.wait()
    add(v, rounds)
    # CLOCK_MONOTONIC is one clock for all processes, so the parent can compare.
    child_end.value = time.monotonic_ns()


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    ctx = multiprocessing.get_context("fork")
    v = ctx.Value("i", 0)
    ready, go = ctx.Event(), ctx.Event()
    child_end = ctx.RawValue("q", 0)
    # Each process on its own CPU, so that they contend (left alone, the scheduler often keeps
    # the child on its parent's CPU, and the increments run one after another).
    cpus = sorted(os.sched_getaffinity(0))[:2]
    if len(cpus) < 2:
        cpus = [None, None]
    p = ctx.Process(target=child, args=(v, warmup, rounds, ready, go, child_end, cpus[1]))
    p.start()
    pin(cpus[0])
    add(v, warmup)
    ready.wait()
    start = time.monotonic_ns()
    go.set()
    add(v, rounds)
    end = time.monotonic_ns()
    p.join()
    if p.exitcode != 0:
        sys.exit("child failed")
    end = max(end, child_end.value)
    if v.value != 2 * (warmup + rounds):
        sys.exit("lost an increment")
    print(f"{2 * rounds / (end - start) * 1e3:.3f}")


if __name__ == "__main__":
    main()
