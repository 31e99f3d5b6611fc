"""``python -m app.training train|anneal|evaluate|reproduce``: the training commands without the rest of the CLI.

The same commands as ``python -m app``; this entry point needs only torch and the training dependencies
(no web stack), which is handy on a bare GPU machine. ``anneal`` is the exception: it decodes images with the
server's own decoder, so that a model is fine-tuned on exactly the tensors it is served.
"""

import argparse
import sys

from app.training.cli import add_parsers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.training", description=__doc__)
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
