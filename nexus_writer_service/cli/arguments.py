"""What every command of the package does with its arguments, in one place.

* :class:`Parser`: a usage error is one line on stderr naming the argument, and
  exit status 2;
* :func:`positive_int`, :func:`non_negative_int`, :func:`non_negative_float`:
  argument types that say what is wrong with a number;
* :func:`checked_or_exit`: the value a check of the arguments (the save options,
  say) makes, or the parser's usage error with the check's message, which names
  the option that is wrong and the values it takes.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, NoReturn, TypeVar

from ..errors import ConfigurationError

__all__ = ["Parser", "positive_int", "non_negative_int", "non_negative_float",
           "checked_or_exit"]

_T = TypeVar("_T")


class Parser(argparse.ArgumentParser):
    """Reports a usage error as one line on stderr and exits with status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(text: str, kind: Callable[[str], _T], what: str) -> _T:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_int(text: str) -> int:
    value = _number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float, "a number")
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def checked_or_exit(parser: argparse.ArgumentParser, check: Callable[[], _T]) -> _T:
    """``check()``, or the parser's usage error (status 2) with the message of the
    :class:`ConfigurationError` (or ``ValueError``, ``TypeError``) it raised: the
    message names the option and the values it takes."""
    try:
        return check()
    except (ConfigurationError, TypeError, ValueError) as exc:
        parser.error(str(exc))
