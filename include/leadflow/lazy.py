"""A package's public names imported on first use (PEP 562 module `__getattr__`).

`leadflow.enrich` and `leadflow.quality` list their API in `__init__` but import the module of a
name only when it is first asked for, so importing one light submodule stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable, Mapping


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` of `package`: `name` comes from the module `exports[name]`; any other
    name is an AttributeError, worded as Python words it."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(module), name)

    return __getattr__
