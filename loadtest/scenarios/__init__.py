"""The scenarios, one command each: comparison, overload, soak, and a single run."""

from loadtest.scenarios.common import Context, variant_targets
from loadtest.scenarios.comparison import CONCURRENCIES, aims, run_comparison
from loadtest.scenarios.overload import measure_capacity, run_overload
from loadtest.scenarios.probe import Prober, normal_latency, recovery_seconds
from loadtest.scenarios.single import run_single
from loadtest.scenarios.soak import memory_growth, run_soak

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
    "run_overload",
    "run_single",
    "run_soak",
    "variant_targets",
]
