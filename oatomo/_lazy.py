"""Lazy re-exports for packages: a public name imports its module on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(namespace: dict[str, Any], lazy: dict[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for a package namespace.

    ``lazy`` maps a public name to the full name of the module that defines it; a name
    equal to its module's last part gives that module (unless the module defines the name,
    as ``oatomo.learn.train`` does).
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        mod = importlib.import_module(module)
        value = getattr(mod, name, mod) if module.endswith("." + name) else getattr(mod, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace.get("__all__", ()))

    return __getattr__, __dir__
