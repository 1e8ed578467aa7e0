# SPDX-License-Identifier: MIT
"""Python baseline of the thread-apply scenario: pool_apply.py on
multiprocessing.pool.ThreadPool(2). Prints the median round trip in microseconds.

Usage: thread_pool_apply.py [rounds]
"""
from multiprocessing.pool import ThreadPool

import pool_apply

if __name__ == "__main__":
    pool_apply.main(lambda: ThreadPool(2))
