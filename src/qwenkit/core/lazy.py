"""Lazy package exports (PEP 562), so that importing a qwenkit package imports nothing heavy.

The CLI discovers every domain package at start-up; a package ``__init__`` that imported torch would make
``qwenkit --help`` take seconds. A package declares its public names instead::

    __getattr__, __all__ = lazy_exports(__name__, {"policy_loss": "qwenkit.rl.losses", ...})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """A module ``__getattr__`` importing ``exports[name]`` (a module path) on first access, and ``__all__``."""
    table = dict(exports)

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(table[name]), name)

    return __getattr__, sorted(table)
