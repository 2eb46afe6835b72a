"""Run the ``nxcheck`` validator of nexusformat on a file and return its errors or
warnings.

Used by the demo and the tests. ``nxcheck -e`` prints a header, the path of each
group or field it checks, each error in red below its path, and finally ``Total
number of errors: N``; ``nxcheck -w`` also prints each warning in orange, and ``Total
number of warnings: N`` before the errors' total. The exit status is 0 whether or not
errors are found, so the helpers here parse the output and cross-check the number of
coloured lines against ``N``; output that cannot be understood (or a missing or
hanging ``nxcheck``) raises :class:`NxcheckError` with the whole output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from ..errors import NexusWriterError

__all__ = ["nxcheck_errors", "nxcheck_warnings", "nxcheck_report", "nxcheck_executable",
           "NxcheckError"]

TIMEOUT = 120.0


class NxcheckError(NexusWriterError, RuntimeError):
    """``nxcheck`` is missing, failed, or printed something that cannot be understood."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEADING_ANSI = re.compile(r"^(?:\x1b\[[0-9;]*m)+")
_ERROR_COLOUR = "\x1b[38;5;1m"
_WARNING_COLOUR = "\x1b[38;2;255;165;0m"
_TOTAL = re.compile(r"^Total number of (errors|warnings): (\d+)\s*$")
_ENTRY = re.compile(r"^NXentry: /([^/]+)$")
_INVALID_NAME = re.compile(r'^"(.*)" is an invalid name$')
#: BLISS's entry names (``12.1``), also given to the links of a sequence's ``scans``
_BLISS_ENTRY_NAME = re.compile(r"^\d+\.\d+$")
_ANY_PATH = re.compile(r"^\w+: /(?:.*/)?([^/]+)$")


def nxcheck_executable() -> str:
    """The ``nxcheck`` script next to this Python, else the one on ``PATH``."""
    candidate = os.path.join(os.path.dirname(sys.executable), "nxcheck")
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("nxcheck")
    if found is None:
        raise NxcheckError(
            f"nxcheck not found next to {sys.executable} nor on PATH: install nexusformat"
        )
    return found


def _run(path: str, level: str = "-e") -> str:
    command = [nxcheck_executable(), level, os.fspath(path)]
    try:
        result = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace")
        raise NxcheckError(
            f"{' '.join(command)} did not finish within {TIMEOUT:g} s; output:\n{output}"
        ) from None
    output = result.stdout.decode(errors="replace")
    if result.returncode != 0:
        raise NxcheckError(
            f"{' '.join(command)} exited with status {result.returncode}; output:\n"
            f"{_ANSI.sub('', output)}"
        )
    return output


def _clean(line: str) -> str:
    return _ANSI.sub("", line).rstrip()


def _parse(raw: str, kind: str = "errors") -> list[tuple[str, str]]:
    """``(message, path line above it)`` for each error (``kind="errors"``) or
    warning (``"warnings"``); checks the reported total."""
    colour = _ERROR_COLOUR if kind == "errors" else _WARNING_COLOUR
    messages: list[tuple[str, str]] = []
    context = ""
    in_message = False
    totals: dict[str, int] = {}
    for line in raw.splitlines():
        text = _clean(line)
        match = _TOTAL.match(text)
        if match:
            totals[match.group(1)] = int(match.group(2))
            continue
        if totals:
            continue
        colours = _LEADING_ANSI.match(line)
        if colours is None:
            if in_message and text:
                messages[-1] = (messages[-1][0] + "\n" + text.strip(), messages[-1][1])
            continue
        in_message = colour in colours.group(0)
        if in_message:
            messages.append((text.strip(), context))
        elif text.strip() and not any(c in colours.group(0)
                                      for c in (_ERROR_COLOUR, _WARNING_COLOUR)):
            context = text.strip()
    cleaned = _ANSI.sub("", raw)
    total = totals.get(kind)
    if total is None:
        raise NxcheckError(f"nxcheck reported no 'Total number of {kind}'; output:\n{cleaned}")
    if total != len(messages):
        raise NxcheckError(
            f"nxcheck reported {total} {kind[:-1]}(s) but printed {len(messages)}; "
            f"output:\n{cleaned}"
        )
    return messages


def _is_entry_name_error(error: str, context: str) -> bool:
    name = _INVALID_NAME.match(error)
    if name is None:
        return False
    entry = _ENTRY.match(context)
    if entry and name.group(1) == entry.group(1):
        return True
    # a sequence's links (or notes) named as the entries of the scans it groups
    item = _ANY_PATH.match(context)
    return bool(item and item.group(1) == name.group(1)
                and _BLISS_ENTRY_NAME.match(name.group(1)))


def nxcheck_errors(path: str, ignore_entry_names: bool = False) -> list[str]:
    """The errors ``nxcheck -e`` finds in the file ``path``, without colour codes.

    With ``ignore_entry_names``, errors saying a top-level NXentry has an
    invalid name (``"1.1" is an invalid name``) are dropped, and so are those about
    anything else named like a BLISS entry (the links of a sequence to the entries
    of its scans): entry names like ``1.1`` are kept for BLISS compatibility.
    """
    errors = _parse(_run(path))
    return [
        error
        for error, context in errors
        if not (ignore_entry_names and _is_entry_name_error(error, context))
    ]


def nxcheck_warnings(path: str) -> list[tuple[str, str]]:
    """The warnings ``nxcheck -w`` gives on the file ``path``, without colour codes, each
    with the path of the group or field it is about (``"Field: /1.1/writer/status"``)."""
    return _parse(_run(path, "-w"), "warnings")


def nxcheck_report(path: str) -> str:
    """The whole output of ``nxcheck -e`` on the file ``path``, without colour codes."""
    return "\n".join(_clean(line) for line in _run(path).splitlines()).strip("\n") + "\n"
