"""The scenarios, one command each: comparison, overload, soak, a single run, versus (the reference) and memory."""

from loadtest.scenarios.common import Context, variant_targets
from loadtest.scenarios.comparison import CONCURRENCIES, aims, run_comparison
from loadtest.scenarios.memory import run_memory
from loadtest.scenarios.overload import measure_capacity, run_overload
from loadtest.scenarios.probe import Prober, normal_latency, recovery_seconds
from loadtest.scenarios.single import run_single
from loadtest.scenarios.soak import memory_growth, run_soak
from loadtest.scenarios.versus import run_versus

__all__ = [
    "CONCURRENCIES",
    "Context",
    "Prober",
    "aims",
    "measure_capacity",
    "memory_growth",
    "normal_latency",
    "recovery_seconds",
    "run_comparison",
    "run_memory",
    "run_overload",
    "run_single",
    "run_soak",
    "run_versus",
    "variant_targets",
]
