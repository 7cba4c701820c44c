"""Exceptions for user-facing input problems.

Every problem a user can cause by giving the toolkit bad input (a missing file, a
malformed scan, an impossible parameter) raises :class:`InputError` (a ``ValueError``)
with a one-line message that names the file, when there is one, and the problem. The
command-line interface turns these into a one-line message and exit code 2.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

__all__ = ["InputError", "UnitWarning", "blame", "warn_units"]


class InputError(ValueError):
    """Bad input from the user: a one-line, human-readable message.

    Parameters
    ----------
    message
        What is wrong, in one line.
    path
        The file the problem is in, if any; it is prefixed to the message.
    """

    def __init__(self, message: str, path: object | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


@contextlib.contextmanager
def blame(path: str | os.PathLike) -> Iterator[None]:
    """Attach ``path`` to input errors raised inside that name no file (e.g. by the
    geometry nouns); errors that already name a file pass unchanged."""
    try:
        yield
    except InputError as exc:
        if exc.path is None:
            raise InputError(exc.problem, path) from None
        raise


class UnitWarning(UserWarning):
    """A value that is almost surely in the wrong unit (e.g. millimetres given as metres).

    Raised as a warning, not an error: the value is used as given. Silence it with
    ``warnings.simplefilter("ignore", oatomo.errors.UnitWarning)``.
    """


def warn_units(message: str, *, stacklevel: int = 3) -> None:
    """Warn (:class:`UnitWarning`) that a value looks like a unit slip (route warnings to
    logging with :func:`logging.captureWarnings` if preferred)."""
    warnings.warn(message, UnitWarning, stacklevel=stacklevel)
