# SPDX-License-Identifier: MIT
"""Python baseline of the pool-map1 scenario: pool_map.py with chunksize 1.

Usage: pool_map_chunksize1.py [rounds]
"""
import sys

import pool_map

if __name__ == "__main__":
    sys.argv[2:] = ["1"]
    pool_map.main()
