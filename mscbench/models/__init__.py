"""The model zoo. Every module in this package registers its model(s) on import."""

import importlib
import pkgutil

from mscbench.models.base import REGISTRY, ModelOutput, build_model, get_card, register, register_variant

_INFRASTRUCTURE = {"base", "blocks", "cel"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["REGISTRY", "ModelOutput", "build_model", "get_card", "register", "register_variant"]
