"""Lazy re-exports for packages: a public name imports its module on first use."""

from __future__ import annotations

import importlib
import sys
import threading
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


def prefetch(*modules: str) -> threading.Thread | None:
    """Import ``modules`` in a background thread; return it (join it before exiting).

    A command that will need a heavy package later (PyTorch for the refiner, Matplotlib
    for the figure) starts its import here while the main thread reads the scan and runs
    the reconstruction: the parts of an import that release the GIL (reading files,
    loading shared libraries) overlap with that work. Python's per-module import locks make
    a later ``import`` in the main thread wait for, and then reuse, the thread's module.
    Import errors are left for the main thread's own import to raise.
    """
    todo = [m for m in modules if m not in sys.modules]
    if not todo:
        return None

    def work() -> None:
        for name in todo:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the main thread's import reports it
                return

    thread = threading.Thread(target=work, name="oatomo-prefetch", daemon=True)
    thread.start()
    return thread
