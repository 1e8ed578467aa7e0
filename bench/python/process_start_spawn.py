# SPDX-License-Identifier: MIT
"""Python baseline of the spawn-method scenario: process_start.py under the
spawn start method.

Usage: process_start_spawn.py [rounds]
"""
import sys

import process_start

if __name__ == "__main__":
    sys.argv[2:] = ["spawn"]
    process_start.main()
