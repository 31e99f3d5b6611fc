"""Loads run at a lowered priority, and the threads they start serve at the normal one afterwards.

Each case runs in a fresh interpreter: niceness is per thread and cannot always be undone, and the suite's own
threads (decode pools of other tests) would be counted among the threads a load started."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="per-thread niceness is read from /proc")


def _run(program: str, **kwargs: object) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(program)], capture_output=True, text=True, timeout=120, **kwargs
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


THREADS = """
    import os, threading
    from app.serving.resources import LOAD_NICENESS, lowered_priority
    from app.serving.dataplane import DECODE_NICENESS

    def nice():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    stop = threading.Event()
    seen = {}

    def serving(name, own=None):
        if own is not None:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), own)
        seen[name] = threading.get_native_id()
        stop.wait()

    older = threading.Thread(target=serving, args=("older",))
    older.start()

    def load():
        with lowered_priority():
            seen["inside"] = nice()
            for name, own in (("pool", None), ("decoder", DECODE_NICENESS)):
                threading.Thread(target=serving, args=(name, own)).start()
            while len(seen) < 4:
                pass
            seen["pool during"] = os.getpriority(os.PRIO_PROCESS, seen["pool"])
        seen["after"] = nice()

    loader = threading.Thread(target=load)
    loader.start()
    loader.join()
    print(LOAD_NICENESS, nice(), seen["inside"], seen["pool during"], seen["after"],
          *(os.getpriority(os.PRIO_PROCESS, seen[name]) for name in ("pool", "decoder", "older")))
    stop.set()
"""


def test_a_load_runs_nicer_and_the_threads_it_started_serve_at_the_normal_priority() -> None:
    step, main, inside, pool_during, after, pool, decoder, older = map(int, _run(THREADS))
    assert step == 8 and main == 0
    assert inside == pool_during == step  # the loader and what it starts, while it runs
    assert after == pool == 0  # given back: a runtime's pool goes on to serve
    assert decoder == 10  # set its own niceness: left alone
    assert older == 0  # started before the load: never touched


def test_where_the_priority_could_not_be_given_back_loads_run_at_the_normal_one() -> None:
    program = """
        import os, resource, threading
        from app.serving.resources import lowered_priority
        resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
        if os.getuid() == 0:  # as nobody, without CAP_SYS_NICE: niceness only goes up
            os.setgid(65534)
            os.setuid(65534)
        inside = []
        def load():
            with lowered_priority():
                inside.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        thread = threading.Thread(target=load)
        thread.start()
        thread.join()
        print(*inside)
    """
    assert _run(program) == ["0"]


OPENVINO = """
    import asyncio, os, threading
    import torch
    from app.runtimes.onnx_graph import export_onnx
    from app.runtimes.openvino_runtime import OpenVinoRuntime
    from app.serving.registry import _in_daemon_thread
    from app.serving.resources import LOAD_NICENESS

    def threads():
        return {int(t): os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir("/proc/self/task")}

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10)).eval()
    graph = export_onnx(net, (1, 28, 28))
    before = threads()

    def compile_and_run():
        runtime = OpenVinoRuntime(graph, threads=1, device=torch.device("cpu"))
        runtime(torch.zeros(2, 1, 28, 28))
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), threads(), runtime

    inside, during, runtime = asyncio.run(_in_daemon_thread("foldserve-load-test", compile_and_run))
    after = threads()
    started = set(during) - set(before)
    print(LOAD_NICENESS, inside, len(started), sum(after.get(t, 0) != 0 for t in started))
    print(sum(during[t] == LOAD_NICENESS for t in started), runtime(torch.zeros(3, 1, 28, 28)).shape[1])
"""


def test_the_threads_openvino_starts_in_a_load_serve_at_the_normal_priority() -> None:
    pytest.importorskip("openvino")
    step, inside, started, still_nice, nice_during, classes = map(int, _run(OPENVINO))
    assert inside == step
    assert started > 0 and nice_during == started  # the plugin's threads, niced while the load ran
    assert still_nice == 0
    assert classes == 10
