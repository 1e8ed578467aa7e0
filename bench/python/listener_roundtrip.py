# SPDX-License-Identifier: MIT
"""Python baseline of the listener-rt scenario: send_bytes/recv_bytes of 8
bytes there and back on one authenticated Client connection to a Listener in a
forked child over TCP on loopback. Prints the median round trip in microseconds.

Usage: listener_roundtrip.py [rounds]   (rounds/10, at least 1, untimed warm-up rounds first)
"""
import multiprocessing
import statistics
import sys
import time
from multiprocessing.connection import Client, Listener

KEY = b"benchmark key"


def serve(listener):
    with listener.accept() as conn:
        try:
            while True:
                conn.send_bytes(conn.recv_bytes())
        except EOFError:
            pass


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warmup = max(rounds // 10, 1)
    ctx = multiprocessing.get_context("fork")
    listener = Listener(("127.0.0.1", 0), authkey=KEY)
    p = ctx.Process(target=serve, args=(listener,))
    p.start()
    address = listener.address
    listener.close()
    conn = Client(address, authkey=KEY)
    times = []
    for i in range(warmup + rounds):
        message = i.to_bytes(8, "little")
        start = time.perf_counter_ns()
        conn.send_bytes(message)
        reply = conn.recv_bytes()
        end = time.perf_counter_ns()
        if reply != message:
            sys.exit("bad reply")
        if i >= warmup:
            times.append((end - start) / 1e3)
    conn.close()
    p.join()
    if p.exitcode != 0:
        sys.exit("child failed")
    print(f"{statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
