# SPDX-License-Identifier: MIT
"""Python baseline of the thread-submit scenario: executor_submit.py on
concurrent.futures.ThreadPoolExecutor(2). Prints millions of tasks per second.

Usage: thread_executor_submit.py [rounds]
"""
import concurrent.futures

import executor_submit

if __name__ == "__main__":
    executor_submit.main(lambda: concurrent.futures.ThreadPoolExecutor(2))
