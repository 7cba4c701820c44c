"""The ``oatomo`` command: a thin shell over the Python API.

Each sub-command lives in its own module that exposes ``register(subparsers)``; the
function it registers (``args.func``) does the work and returns an exit code. User
errors (:class:`oatomo.InputError`, missing files, OS errors such as a full disk or a
read-only directory, running out of memory) print one line and exit with 2; unexpected
exceptions keep their traceback and exit with 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from typing import Any, NoReturn

from oatomo import __version__
from oatomo._atomic import forget_outputs, hdf5_broken
from oatomo.errors import InputError, UnitWarning

#: Modules that contribute sub-commands, in the order they appear in ``--help``.
COMMAND_MODULES = (
    "oatomo.cli.scan",       # simulate, reconstruct, setups, presets, info
    "oatomo.cli.cmnist",     # cmnist
    "oatomo.cli.autofocus",  # autofocus
    "oatomo.cli.calibrate",  # calibrate
    "oatomo.cli.refiner",    # refiner data / eval-set / train / evaluate / export (+ family)
)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, ``oatomo COMMAND: error: ...``
    (exit 2), as every other error of the CLI; the usage is shown by ``--help`` only.
    Sub-command parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    parser = OneLineParser(
        prog="oatomo",
        description="Optoacoustic tomography: simulate setups, reconstruct scans, "
        "refine images with setup-invariant models.",
    )
    parser.add_argument("--version", action="version", version=f"oatomo {__version__}")
    _add_common(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    todo = list(sub.choices.values())
    while todo:  # -v / -q also after the sub-command (and after `family data`, ...)
        command = todo.pop()
        _add_common(command, argparse.SUPPRESS)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return parser


def _add_common(parser: argparse.ArgumentParser, default: object) -> None:
    """``-v/--verbose`` and ``-q/--quiet``; sub-commands keep the main parser's value
    unless given after the sub-command (their default is ``SUPPRESS``)."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log progress details")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="no progress bars")


def _report_warnings(command: str, caught: list) -> None:
    """The warnings of a successful command, one line each (multi-line messages folded).

    A :class:`oatomo.errors.UnitWarning` (a likely unit slip the user must see) is printed
    on stderr as ``oatomo COMMAND: warning: ...``; other library warnings go to the
    ``oatomo`` logger (shown as ``WARNING oatomo: ...``). A failed command reports none:
    its error line is all there is.
    """
    log = logging.getLogger("oatomo")
    for w in caught:
        text = " ".join(str(w.message).split())
        if issubclass(w.category, UnitWarning):
            print(f"oatomo {command}: warning: {text}", file=sys.stderr)
        else:
            log.warning("%s", text)


#: :data:`oatomo.calibration.estimate.NOTE_RECORD`, spelled here so that the command line
#: does not import the calibration to filter its log (tested equal).
_NOTE_RECORD = "calibration_note"


def _not_a_calibration_note(record: logging.LogRecord) -> bool:
    """Log filter: drop the calibration's notes (the reports of ``oatomo reconstruct`` and
    ``oatomo calibrate`` print each as a ``note:`` line), keep every other record."""
    return not getattr(record, _NOTE_RECORD, False)


def _silence_stdout(stream: Any) -> None:
    """Point the file descriptor of ``stream`` at the null device: what is still written
    (and the interpreter's final flush) then goes nowhere, without an error."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


class _PipeGuard:
    """``sys.stdout`` while a command runs: when the reader of a pipe goes away
    (``oatomo info scan.h5 | head -1``) the rest of the output is dropped and the command
    goes on to its normal end, instead of dying of the closed pipe."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            _silence_stdout(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            _silence_stdout(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``oatomo`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named after the sub-command they were given to
        words = [getattr(args, k, None) for k in ("command", "refiner_command")]
        prog = " ".join(["oatomo", *(w for w in words if w)])
        parser.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extra)}\n")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_a_calibration_note)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    forget_outputs()
    stdout = sys.stdout
    sys.stdout = _PipeGuard(stdout)
    try:
        with warnings.catch_warnings(record=True) as caught:
            # warnings are logged after the command, one line each, and dropped when it
            # fails (the error line is then all there is); numerical warnings of hostile
            # input are noise beside the error they lead to
            warnings.simplefilter("default")
            warnings.simplefilter("ignore", RuntimeWarning)
            code = int(args.func(args) or 0)
        _report_warnings(args.command, caught)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # output written past sys.stdout: stop quietly
        _silence_stdout(sys.stdout)
        return 141
    except InputError as exc:
        message = " ".join(str(exc).splitlines())
        print(f"oatomo {args.command}: error: {message}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        where = exc.filename or ""
        print(f"oatomo {args.command}: error: {where}: file not found", file=sys.stderr)
        return 2
    except OSError as exc:  # read-only directory, full disk, output is a directory, ...
        where = exc.filename or "?"
        problem = " ".join((exc.strerror or str(exc) or type(exc).__name__).split())
        print(f"oatomo {args.command}: error: {where}: {problem}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"oatomo {args.command}: error: out of memory (lower the sizes or set "
              f"OATOMO_MAX_BYTES)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"oatomo {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout = stdout
        forget_outputs()
        if hdf5_broken():
            # an HDF5 write failed (reported above): the library would crash the
            # interpreter while shutting down with that file open, so end here
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
