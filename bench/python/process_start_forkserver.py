# SPDX-License-Identifier: MIT
"""Python baseline of the forkserver-method scenario: process_start.py under
the forkserver start method.

Usage: process_start_forkserver.py [rounds]
"""
import sys

import process_start

if __name__ == "__main__":
    sys.argv[2:] = ["forkserver"]
    process_start.main()
