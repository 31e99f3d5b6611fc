"""FOLDSERVE_MALLOC_ARENAS: glibc's malloc keeps to that many arenas, however many threads allocate.

Each case runs in a fresh interpreter (an arena limit cannot be undone, and the suite's own threads have arenas
already): eight threads, alive at once, each allocating through malloc (numpy buffers under glibc's mmap
threshold); then glibc's ``malloc_info`` lists the arenas (``<heap nr=...>``)."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")

PROGRAM = textwrap.dedent(
    """
    import ctypes, os, sys, tempfile, threading
    import numpy as np
    from app.serving.resources import limit_malloc_arenas

    print(limit_malloc_arenas(int(sys.argv[1])))
    ready, done = threading.Barrier(9), threading.Event()
    def allocate():
        held = [np.ones(4096) for _ in range(64)]  # 32 KiB each: from the thread's arena, not mmap
        ready.wait()
        done.wait()
    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for thread in threads:
        thread.start()
    ready.wait()
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    descriptor, path = tempfile.mkstemp()
    os.close(descriptor)
    stream = ctypes.c_void_p(libc.fopen(path.encode(), b"w"))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    done.set()
    print(open(path).read().count("<heap nr="))
    os.unlink(path)
    """
)


def _arenas(limit: int, **env: str) -> tuple[str, int]:
    environment = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(limit)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**environment, **env},
    ).stdout.split()
    return out[0], int(out[1])


def test_the_limit_holds_however_many_threads_allocate() -> None:
    assert _arenas(2) == ("True", 2)


def test_zero_leaves_glibcs_own_limit() -> None:
    applied, arenas = _arenas(0)
    assert applied == "False"
    assert arenas > 2  # the main arena and one per thread, up to 8 per core


def test_malloc_arena_max_in_the_environment_wins() -> None:
    assert _arenas(2, MALLOC_ARENA_MAX="1") == ("False", 1)
