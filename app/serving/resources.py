"""What one copy of the service (the single process, one of ``FOLDSERVE_WORKERS`` forked workers, or one Ray
replica) takes of the machine, and what changes when there are several copies: one rule each, for every kind."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from app.config import Settings

__all__ = [
    "Threads",
    "admin_calls_reach_every_copy",
    "enable_multiprocess_values",
    "limit_malloc_arenas",
    "lowered_priority",
    "return_freed_memory",
    "thread_budget",
    "usable_cores",
]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Threads(NamedTuple):
    torch: int  # torch's intra-op threads (on the CPU)
    decode: int  # threads of the decode pool


def thread_budget(settings: Settings, cores: int | None = None) -> Threads:
    """The threads of one copy: ``FOLDSERVE_TORCH_THREADS`` and ``FOLDSERVE_DECODE_THREADS`` where set, else from
    its share of the ``cores`` (default :func:`usable_cores`; a Ray replica's: its CPUs) divided by the workers, at
    least one: torch one fewer than the share, the decoders half of it, each at least one.

    Measured on 2 cores: one intra-op thread halves the original ResNet's p50 at concurrency 1, because two
    threads fight the event loop and the decoders for the same cores.
    """
    share = max(1, (usable_cores() if cores is None else cores) // settings.workers)
    return Threads(
        max(1, share - 1) if settings.torch_threads is None else settings.torch_threads,
        max(1, share // 2) if settings.decode_threads is None else settings.decode_threads,
    )


def admin_calls_reach_every_copy(settings: Settings, *, several: bool) -> bool:
    """Whether the repository's load and unload calls keep every copy alike: a call reaches one copy only, so with
    several only ``FOLDSERVE_MODEL_CONTROL=poll`` (every copy following the model store) does."""
    return not several or settings.model_control == "poll"


def enable_multiprocess_values(directory: Path) -> None:
    """Make every prometheus_client metric this process creates from now on keep its values in ``directory``
    (prometheus_client's multiprocess mode), where a scrape can sum the files of several copies.

    prometheus_client picks its value class when first imported, maybe (in a Ray worker, surely) before the folder
    was named: it is picked again here.
    """
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter for the most arenas (``malloc.h``)."""


def limit_malloc_arenas(arenas: int) -> bool:
    """Let glibc's malloc use at most ``arenas`` arenas in this process (and the processes it forks from now on);
    whether it was set. Nothing where ``arenas`` is 0, where ``MALLOC_ARENA_MAX`` is set (glibc read it at start) or
    where the C library is not glibc.

    glibc gives each new thread an arena of its own up to 8 per core, and what a thread freed stays in its arena. A
    load runs in a thread of its own and ONNX Runtime's sessions allocate from it, so under glibc's limit reloads
    leave memory behind: ``make soak`` measures a worker's PSS across reloads (docs/operations.md, "Soak with
    faults"), and ``FOLDSERVE_MALLOC_ARENAS=0 make soak`` the same with glibc's limit.
    """
    if arenas == 0 or "MALLOC_ARENA_MAX" in os.environ:
        return False
    with contextlib.suppress(OSError, AttributeError):
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas))
    return False


def return_freed_memory() -> None:
    """Give the memory that loading used and freed back to the operating system (glibc keeps it otherwise,
    and a worker's resident size then stays at its loading peak). Best effort: glibc only."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


LOAD_NICENESS = 8
"""How much nicer than the thread that starts it a model's load runs (:func:`lowered_priority`): Linux weighs a
thread at niceness 8 against one at 0 about 1:6, so a reload, or a replacement worker's loads, take the cores that
serving leaves over rather than an equal share. Not the decode threads' 10, which :func:`lowered_priority` must
tell apart from the threads a load started."""


@contextlib.contextmanager
def lowered_priority(niceness: int = LOAD_NICENESS) -> Iterator[None]:
    """Run the calling thread, and every thread it starts meanwhile, ``niceness`` nicer; at the end, give the
    threads it started and that are still running (ONNX Runtime's and OpenVINO's pools, which go on to serve)
    the calling thread's priority back, and the calling thread its own.

    A thread that set its own niceness meanwhile (a decode thread) is left as it is. Nothing where threads'
    niceness cannot be read from ``/proc`` (not Linux), or where this process may not raise a thread's priority
    back (an unprivileged user whose ``RLIMIT_NICE`` is below 20): there, the threads started would serve at the
    lowered priority for good.
    """
    if not _may_raise_priority():
        yield
        return
    own = threading.get_native_id()
    base = os.getpriority(os.PRIO_PROCESS, own)
    before = _thread_ids()
    os.setpriority(os.PRIO_PROCESS, own, base + niceness)
    lowered = os.getpriority(os.PRIO_PROCESS, own)  # clamped at 19
    try:
        yield
    finally:
        for tid in _thread_ids() - before - {own}:
            with contextlib.suppress(OSError):  # ended meanwhile
                if os.getpriority(os.PRIO_PROCESS, tid) == lowered:
                    os.setpriority(os.PRIO_PROCESS, tid, base)
        os.setpriority(os.PRIO_PROCESS, own, base)


def _thread_ids() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/task")}


@functools.cache
def _may_raise_priority() -> bool:
    """Whether a thread of this process may be made nicer and then given its priority back (Linux only)."""
    if not hasattr(os, "setpriority") or not Path("/proc/self/task").is_dir():
        return False
    answer: list[bool] = []

    def probe() -> None:
        own = threading.get_native_id()
        base = os.getpriority(os.PRIO_PROCESS, own)
        try:
            os.setpriority(os.PRIO_PROCESS, own, min(base + 1, 19))
            os.setpriority(os.PRIO_PROCESS, own, base)
        except OSError:
            answer.append(False)
        else:
            answer.append(base < 19)

    thread = threading.Thread(target=probe, name="foldserve-priority-probe")  # it ends niced where not allowed
    thread.start()
    thread.join()
    return answer[0]
