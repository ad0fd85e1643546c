"""`python -m ssl_bench.bench`."""

import sys

from ssl_bench.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
