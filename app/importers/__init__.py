"""Other libraries' layouts into foldserve checkpoints: torchvision (and timm) ResNet state_dicts.

Data flows one way: importers read foreign weights and write into the model store through
:func:`app.store.save_checkpoint`; nothing in :mod:`app.nets`, :mod:`app.store` or :mod:`app.simplify`
imports this package.
"""

from app.importers.resnet import import_resnet
from app.importers.torchvision import ARCHS, SOURCES, check_against_torchvision, to_foldserve_key, to_torchvision_key
from app.importers.weights import ImportRefused, read_state_dict

__all__ = [
    "ARCHS",
    "SOURCES",
    "ImportRefused",
    "check_against_torchvision",
    "import_resnet",
    "read_state_dict",
    "to_foldserve_key",
    "to_torchvision_key",
]
