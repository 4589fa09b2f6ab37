"""The CLI's shared conventions, below every subcommand: exit codes, number types, path checks, outputs.

One error convention for every ``vibration-anomaly`` subcommand (README "The command line"):

* exit 0: success;
* exit 2: refused input, with ONE line on stderr naming the file, field or
  option, what was found and what is allowed;
* exit 1: an internal error (or a missing environment: no GPU, no TensorRT),
  one line on stderr; the traceback only behind the global ``--debug``.

The subcommand modules (``model/cli.py``, ``bundle/cli.py``, ...) import these helpers from here, and
``vibration_anomaly.cli`` (the top, which assembles the subcommands) does too, so no import runs back
up from a subcommand to the command that loads it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import stat
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from vibration_anomaly.fileio import atomic_path as atomic_output  # noqa: F401 - the CLI's name for it
from vibration_anomaly.fileio import kind_of, write_text_atomic  # noqa: F401 - write_text_atomic re-exported

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130

DEBUG_ENV = "VIBRATION_ANOMALY_DEBUG"


class _HelpFormatter(argparse.HelpFormatter):
    """Append each option's default to its help, unless the help already states it.

    Users asked "what happens if I leave this out?" for options whose help said
    nothing; flags (store_true) and options without a default are left alone.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text.lower()
            or default is None
            or isinstance(default, bool)
            or default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line on stderr and exit 2.

    argparse prints the whole usage block before the error; in a log or a CI
    job that buries the one line that says what was wrong. Subparsers inherit
    this class (argparse passes ``type(self)`` as their parser class).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_REFUSED, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _refusal_types() -> tuple[type[BaseException], ...]:
    from vibration_anomaly.errors import Refusal  # InputError, BundleRefused, ...

    return (Refusal,)


def _silence_stdout() -> None:
    """After a closed pipe (``bundle show | head``), point stdout at /dev/null.

    Otherwise Python's own flush at exit raises BrokenPipeError a second time
    and prints "Exception ignored ..." to stderr (Python docs, "Note on SIGPIPE").
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def refusal_message(exc: BaseException) -> str | None:
    """The one stderr line for a refused input, or None when ``exc`` is not a refusal (an internal error)."""
    if isinstance(exc, _refusal_types()):
        return _one_line(str(exc))
    if isinstance(exc, OSError) and exc.filename is not None and not isinstance(exc, BrokenPipeError):
        # A path the user named could not be read or written: their input, not our bug.
        return f"{exc.filename}: {exc.strerror or exc}"
    return None


def guarded(fn: Callable[[argparse.Namespace], int], name: str) -> Callable[[argparse.Namespace], int]:
    """Wrap a command function so refused input is exit 2 with one line, however it is called.

    Tests and scripts call ``args.func(args)`` without ``main``; they get the
    same exit code and message. Internal errors propagate (``main`` makes
    them exit 1, with the traceback only behind ``--debug``).
    """

    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args) or 0)
        except Exception as exc:
            msg = refusal_message(exc)
            if msg is None:
                raise
            if _debug_enabled(args):
                traceback.print_exc()
            print(f"vibration-anomaly {name}: error: {msg}", file=sys.stderr)
            return EXIT_REFUSED

    run.__name__ = getattr(fn, "__name__", "run")
    run.__doc__ = fn.__doc__
    return run


def _debug_enabled(args: argparse.Namespace | None) -> bool:
    return bool(getattr(args, "debug", False) or os.environ.get(DEBUG_ENV, "") not in ("", "0"))


# ---------------------------------------------------------------- numbers


def number(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = True,
    hi_open: bool = False,
    integer: bool = False,
    unit: str = "",
) -> Callable[[str], Any]:
    """An argparse ``type=``: a finite number in a range, refused with the allowed range named.

    ``float("nan")`` passes every ``<``/``>`` comparison as False, so NaN and
    inf are refused explicitly before any range check (a NaN threshold once
    replaced a good calibration).
    """

    def describe() -> str:
        def fmt(v: float) -> str:
            return str(int(v)) if integer else f"{v:g}"

        parts = []
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {fmt(lo)}")
        if hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {fmt(hi)}")
        kind = "an integer" if integer else "a finite number"
        return f"{kind}{' ' + ' and '.join(parts) if parts else ''}{' ' + unit if unit else ''}"

    def parse(text: str) -> Any:
        try:
            value: float = int(text, 10) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; expected {describe()}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"got {text!r}; expected {describe()}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(f"got {text!r}; expected {describe()}")
        if hi is not None and (value >= hi if hi_open else value > hi):
            raise argparse.ArgumentTypeError(f"got {text!r}; expected {describe()}")
        return value

    parse.__name__ = "integer" if integer else "number"
    return parse


def number_list(
    lo: float, hi: float, *, unit: str = "", lo_open: bool = True
) -> Callable[[str], tuple[float, ...]]:
    """Comma-separated finite numbers in (lo, hi] ([lo, hi] with ``lo_open=False``), at least one, no repeats."""
    one = number(lo, hi, unit=unit, lo_open=lo_open)

    def parse(text: str) -> tuple[float, ...]:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"got {text!r}; expected a comma list such as 0.5,1,2")
        values = tuple(one(p) for p in parts)
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"got {text!r}; each value at most once")
        return values

    parse.__name__ = "number list"
    return parse


def number_range(lo: float, hi: float, *, unit: str = "") -> Callable[[str], tuple[float, float]]:
    """``LO,HI``: two finite numbers in (lo, hi], LO < HI (a band such as ``2500,4500`` Hz)."""
    one = number(lo, hi, unit=unit)
    u = f" in {unit}" if unit else ""

    def parse(text: str) -> tuple[float, float]:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"got {text!r}; expected LO,HI{u} (two numbers)")
        a, b = one(parts[0]), one(parts[1])
        if not a < b:
            raise argparse.ArgumentTypeError(f"got {text!r}; expected LO,HI{u} with {lo:g} < LO < HI")
        return (a, b)

    parse.__name__ = "range"
    return parse


# ---------------------------------------------------------------- paths


def check_input_file(path: Path | str, option: str, *, max_bytes: int | None = None) -> Path:
    """Refuse at once what cannot be a readable file: missing, a directory, a FIFO, a device, too large.

    Opening a FIFO for reading blocks until a writer appears (a hang); a
    device streams forever. Both are refused from ``stat`` alone, before any open.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise _refused(option, str(p), "does not exist") from None
    except OSError as exc:
        raise _refused(option, str(p), f"cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refused(option, str(p), f"is {kind_of(st.st_mode)}; expected a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise _refused(
            option, str(p), f"is {st.st_size} bytes; the limit is {max_bytes} bytes (checked before reading)"
        )
    if not os.access(p, os.R_OK):
        raise _refused(option, str(p), "cannot be read: permission denied")
    return p


def check_output_file(path: Path | str, option: str) -> Path:
    """Refuse an output path that cannot become a regular file, before any work is done.

    Hours of evaluation or a signature should not be lost because ``--out``
    named a folder or a read-only place. Nothing is created here; missing
    folders on the way are created only when the output is written.
    """
    p = Path(path)
    if str(path).endswith(os.sep) or p.is_dir():
        raise _refused(option, str(p), "is a directory; expected a file path (DIR/NAME)")
    if p.exists() or p.is_symlink():
        try:
            st = os.stat(p)
        except OSError as exc:
            raise _refused(option, str(p), f"cannot be replaced: {exc.strerror or exc}") from None
        if not stat.S_ISREG(st.st_mode):
            raise _refused(option, str(p), f"is {kind_of(st.st_mode)}; expected a regular file to replace")
    _check_writable_folder(p.parent if str(p.parent) else Path("."), option, p)
    return p


def _check_writable_folder(folder: Path, option: str, target: Path) -> None:
    """The nearest existing ancestor must be a writable folder; missing folders are created at write time."""
    missing = []
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    if not folder.is_dir():
        raise _refused(option, str(target), f"{folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _refused(
            option,
            str(target),
            f"folder {folder} is not writable" + (f" (to create {missing[-1]})" if missing else ""),
        )


def check_output_dir(path: Path | str, option: str) -> Path:
    """An output *directory*: refused when it is a file, or when its parent is missing or read-only."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise _refused(option, str(p), "exists and is not a directory; expected a directory to write into")
    _check_writable_folder(p, option, p)
    return p


def _refused(option: str, found: str, problem: str) -> Exception:
    from vibration_anomaly.errors import InputError

    return InputError(option, found, problem)
