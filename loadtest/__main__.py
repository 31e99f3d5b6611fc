"""Entry point: ``python -m loadtest SCENARIO ...`` (see ``--help``); user errors are one line on stderr."""

import sys

import httpx

from loadtest.cli import main

try:
    sys.exit(main())
except (ValueError, FileNotFoundError, TimeoutError, RuntimeError, httpx.HTTPError) as error:
    print(f"loadtest: error: {error}", file=sys.stderr)
    sys.exit(2)
