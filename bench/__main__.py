"""`python -m bench [NAME ...] [--quick]`: run benchmarks and rewrite their BENCHMARKS.md sections."""

import sys

from bench._cli import main

if __name__ == "__main__":
    sys.exit(main())
