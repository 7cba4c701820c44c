"""The ``oatomo`` command: a thin shell over the Python API.

Each sub-command lives in its own module that exposes ``register(subparsers)``; the
function it registers (``args.func``) does the work and returns an exit code. User
errors (:class:`oatomo.InputError`, missing files) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ..errors import InputError

#: Modules that contribute sub-commands, in the order they appear in ``--help``.
COMMAND_MODULES = (
    "oatomo.cli.scan",       # simulate, reconstruct, info, setups
    "oatomo.cli.dataset",    # dataset, dataset merge
    "oatomo.cli.learn",      # train, evaluate
    "oatomo.cli.cmnist",     # cmnist
    "oatomo.cli.autofocus",  # autofocus
    "oatomo.cli.calibrate",  # calibrate
    "oatomo.cli.family",     # family data / train / evalset / evaluate / export
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="oatomo",
        description="Optoacoustic tomography: simulate setups, reconstruct scans, "
        "refine images with setup-invariant models.",
    )
    parser.add_argument("--version", action="version", version=f"oatomo {__version__}")
    _add_common(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command in sub.choices.values():  # -v / -q also after the sub-command
        _add_common(command, argparse.SUPPRESS)
    return parser


def _add_common(parser: argparse.ArgumentParser, default: object) -> None:
    """``-v/--verbose`` and ``-q/--quiet``; sub-commands keep the main parser's value
    unless given after the sub-command (their default is ``SUPPRESS``)."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log progress details")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="no progress bars")


def _one_line_warnings(command: str) -> None:
    """Show library warnings (e.g. :class:`oatomo.errors.UnitWarning`) as one stderr line
    each, ``oatomo COMMAND: warning: ...``, instead of Python's two-line form."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore
        print(f"oatomo {command}: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``oatomo`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _one_line_warnings(args.command)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except BrokenPipeError:
        # the reader went away (``oatomo setups | head -1``): stop quietly, as a
        # tool killed by SIGPIPE would, and keep the interpreter's final flush silent
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except InputError as exc:
        print(f"oatomo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        where = exc.filename or ""
        print(f"oatomo {args.command}: error: {where}: file not found", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"oatomo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
