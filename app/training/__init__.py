"""Training ResNets on MNIST, with skip weights annealed to zero, and reproducing the paper's results.

``data`` loads and splits the digits, ``schedules`` holds the skip-weight homotopy, ``loop`` trains,
``record`` writes checkpoints through :mod:`app.store`, ``presets`` names the recipes, ``evaluate`` and
``reproduce`` measure what the simplifications keep and what they save, ``cli`` registers the commands.
"""

from app.training.data import DataSpec, Digits, load_digits
from app.training.loop import TrainConfig, TrainResult, accuracy, train
from app.training.presets import PRESETS, SHIPPED, get_preset
from app.training.record import load_history, load_samples, save_run
from app.training.schedules import SkipSchedule

__all__ = [
    "PRESETS",
    "SHIPPED",
    "DataSpec",
    "Digits",
    "SkipSchedule",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "get_preset",
    "load_digits",
    "load_history",
    "load_samples",
    "save_run",
    "train",
]
