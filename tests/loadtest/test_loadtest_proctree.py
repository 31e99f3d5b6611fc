"""The /proc readers against this test process and children it starts: CPU time of a tree, its pids, PSS."""

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from loadtest.proctree import cpu_seconds, process_tree, tree_cpu_seconds, tree_memory
from loadtest.server import resident_memory_bytes

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux /proc")

BURN = """
import sys, time
start = time.process_time()
while time.process_time() - start < 0.3:  # 0.3 s of CPU, however busy the machine is
    pass
print("burnt", flush=True)
sys.stdin.read()  # stay alive (idle) until the test closes stdin
"""

HOLD = """
import subprocess, sys
block = bytearray(64 * 2**20)
for i in range(0, len(block), 4096):
    block[i] = 1  # touch every page, so that it is resident and private
grandchild = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
print(grandchild.pid, flush=True)
sys.stdin.read()
grandchild.stdin.close()
grandchild.wait()
"""


@pytest.fixture
def holder() -> Iterator[tuple[int, int]]:
    """A child holding 64 MiB of private memory, with a grandchild of its own: ``(child pid, grandchild pid)``."""
    with subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        assert child.stdout is not None
        yield child.pid, int(child.stdout.readline())
    # leaving the block closed stdin (the child stops its grandchild and exits) and waited for it


def test_tree_cpu_counts_a_child_while_it_lives_and_after_it_is_waited_for() -> None:
    me = os.getpid()
    before = tree_cpu_seconds(me)
    with subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"burnt"
        assert child.pid in process_tree(me)
        alive = tree_cpu_seconds(me)
        assert cpu_seconds(child.pid) >= 0.25
        assert alive - before >= 0.25, f"the tree gained {alive - before:.3f} s while a child burnt 0.3 s"
    assert child.returncode == 0  # closed stdin, exited, waited for
    assert child.pid not in process_tree(me)
    waited = tree_cpu_seconds(me)  # the child's time is now in this process's cutime + cstime
    assert waited - before >= 0.25, f"the tree gained {waited - before:.3f} s once the child was waited for"


def test_process_tree_lists_descendants_after_their_parents(holder: tuple[int, int]) -> None:
    child, grandchild = holder
    tree = process_tree(os.getpid())
    assert tree[0] == os.getpid()
    assert tree.index(child) < tree.index(grandchild)
    assert process_tree(child) == [child, grandchild]
    assert process_tree(2**22 + 1) == []  # above Linux's largest pid: no such process


def test_tree_memory_gives_pss_per_process_with_roles(holder: tuple[int, int]) -> None:
    child, grandchild = holder
    memory = {m.pid: m for m in tree_memory(child)}
    assert [memory[p].role for p in (child, grandchild)] == ["supervisor", "worker"]
    assert memory[child].pss is not None and memory[child].rss is not None
    assert memory[child].pss >= 60 * 2**20, f"PSS {memory[child].pss} misses the 64 MiB the child touched"
    assert memory[child].pss <= memory[child].rss
    alone = tree_memory(grandchild)
    assert [m.role for m in alone] == ["server"]
    resident = resident_memory_bytes(child)
    assert resident is not None and resident >= memory[child].rss + (memory[grandchild].rss or 0) - 2**20
