"""Progress bars of the command line: the library reports through callbacks, the CLI draws."""

from __future__ import annotations

import sys
from typing import Any


class ProgressBars:
    """A ``callback(what, done, total)`` that draws one tqdm bar per ``what`` on stderr.

    Bars are drawn only when stderr is a terminal and ``enabled``; otherwise calls are
    ignored. Use as a context manager so the bars are closed.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._bars: dict[str, Any] = {}

    def __call__(self, what: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        bar = self._bars.get(what)
        if bar is None:
            from tqdm.auto import tqdm  # lazy: only when a bar is shown

            bar = self._bars[what] = tqdm(total=total, desc=what, leave=False,
                                          dynamic_ncols=True)
        bar.n = done
        bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bars(args: Any) -> ProgressBars:
    """Progress bars for a parsed command line (none with ``-q/--quiet``)."""
    return ProgressBars(enabled=not getattr(args, "quiet", False))
