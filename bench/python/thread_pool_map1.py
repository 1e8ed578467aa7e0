# SPDX-License-Identifier: MIT
"""Python baseline of the thread-map1 scenario: pool_map.py with chunksize 1 on
multiprocessing.pool.ThreadPool(2). Prints millions of items per second.

Usage: thread_pool_map1.py [rounds]
"""
import sys
from multiprocessing.pool import ThreadPool

import pool_map

if __name__ == "__main__":
    sys.argv[2:] = ["1"]
    pool_map.main(lambda: ThreadPool(2))
