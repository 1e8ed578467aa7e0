# SPDX-License-Identifier: MIT
"""Python baseline of the throughput scenario: the child send_bytes() 1 MiB
messages over Pipe(), the parent recv_bytes() them; fork start method.
Prints GB/s (10^9 bytes per second).

Usage: pipe_throughput.py [rounds]   (rounds = timed messages; rounds/10, at least 1,
                                      untimed warm-up messages first)
"""
import multiprocessing
import sys
import time

MESSAGE_SIZE = 1 << 20


def writer(conn, count):
    payload = b"x" * MESSAGE_SIZE
    for _ in range(count):
        conn.send_bytes(payload)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=writer, args=(child_end, warmup + rounds))
    p.start()
    child_end.close()
    start = time.perf_counter_ns()
    for i in range(warmup + rounds):
        if i == warmup:
            start = time.perf_counter_ns()
        if len(parent_end.recv_bytes()) != MESSAGE_SIZE:
            sys.exit("bad message size")
    elapsed_ns = time.perf_counter_ns() - start
    p.join()
    if p.exitcode != 0:
        sys.exit("child failed")
    print(f"{rounds * MESSAGE_SIZE / elapsed_ns:.3f}")


if __name__ == "__main__":
    main()
