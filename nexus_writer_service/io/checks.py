"""File-system checks a writer does before and while writing a scan file.

Where may the file go (allowed roots), can this process write there, is there
enough free disk space, and which processes hold the file open when it turns
out to be locked.

All functions are thread-safe: they keep no state and only make quick, local
file-system calls (``realpath``, ``access``, ``statvfs``, reads of ``/proc``).
They never block on a lock and never touch the network.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Iterable, Union

from nexus_writer_service.errors import (
    ArgumentTypeError,
    ConfigurationError,
    DiskSpaceError,
    PathNotAllowedError,
)

__all__ = [
    "resolve_allowed_roots",
    "check_path_allowed",
    "opened_file_path",
    "check_opened_file_allowed",
    "check_writable",
    "free_disk_space",
    "check_disk_space",
    "lock_holders",
    "describe_holders",
    "makedirs_allowed",
]

StrPath = Union[str, "os.PathLike[str]"]

MIB = 2**20
"""Bytes in one MiB, the unit of the disk-space thresholds."""

_PROC = "/proc"


def resolve_allowed_roots(roots: Iterable[StrPath]) -> tuple[str, ...]:
    """Return the real paths of ``roots``, in order and without duplicates.

    Every root must be absolute; a relative one raises :class:`ConfigurationError`
    naming it. No roots give an empty tuple, which means "no restriction".
    """
    if isinstance(roots, (str, bytes, os.PathLike)):
        raise ArgumentTypeError(
            f"allowed roots must be a sequence of directories, got the single path {roots!r}: "
            "wrap it in a list"
        )
    resolved: list[str] = []
    for root in roots:
        text = os.fspath(root)
        if not os.path.isabs(text):
            raise ConfigurationError(
                f"allowed root {text!r} is not an absolute path: "
                "give allowed_roots as absolute directories"
            )
        real = os.path.realpath(text)
        if real not in resolved:
            resolved.append(real)
    return tuple(resolved)


def _is_inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([root, path]) == root
    except ValueError:
        return False


def check_path_allowed(path: StrPath, roots: Iterable[StrPath], what: str = "file",
                       remedy: str = "change the scan's filename") -> str:
    """Return the real path of ``path`` after checking it lies inside one of ``roots``.

    ``path`` must be absolute. It is resolved with :func:`os.path.realpath`, so
    ``..`` components and symbolic links (also in parents of a file that does
    not exist yet) cannot lead outside the roots. The comparison is by path
    components: the root ``/data/a`` does not accept ``/data/ab``. No roots
    means any absolute path is allowed.

    Raises :class:`PathNotAllowedError` (a :class:`PermissionError`) when the
    path is relative, holds a NUL byte, or lies outside every root; its message
    ends with ``remedy``, what to do besides adding the directory to the roots.
    """
    text = os.fspath(path)
    if "\0" in text:
        raise PathNotAllowedError(
            f"{what} path {text!r} holds a NUL byte, which no path may hold: the "
            "acquisition program must give a valid file name")
    if not os.path.isabs(text):
        raise PathNotAllowedError(f"{what} path must be an absolute path, got {text!r}")
    resolved = os.path.realpath(text)
    allowed = resolve_allowed_roots(roots)
    if not allowed or any(_is_inside(resolved, root) for root in allowed):
        return resolved
    via = f" (resolves to {resolved!r})" if resolved != text else ""
    raise PathNotAllowedError(
        f"{what} {text!r}{via} is outside the allowed roots "
        f"{', '.join(repr(root) for root in allowed)}: "
        f"add its directory to allowed_roots or {remedy}"
    )


def opened_file_path(fd: int) -> str | None:
    """The path of the file open as ``fd``, as the kernel knows it now (Linux ``/proc``).

    It is the file actually opened, wherever the symbolic links that led to it point
    since. ``None`` where ``/proc`` is unavailable. A file removed since it was
    opened gives the path it had.
    """
    try:
        target = os.readlink(os.path.join(_PROC, "self", "fd", str(fd)))
    except OSError:
        return None
    deleted = " (deleted)"
    if target.endswith(deleted):
        target = target[:-len(deleted)]
    return target if os.path.isabs(target) else None


def check_opened_file_allowed(fd: int, path: StrPath, roots: Iterable[StrPath],
                              what: str = "file", creating: bool = False) -> str | None:
    """Check that the file open as ``fd`` (opened as ``path``) lies inside ``roots``.

    :func:`check_path_allowed` checks a path before it is opened; a symbolic link
    changed between that check and the open could still lead elsewhere. This
    checks the file that was really opened. Returns its path (``None`` where
    ``/proc`` is unavailable: nothing can be checked there). ``creating``: ``fd`` is
    a file just made in the directory of ``path``, to become ``path``.

    Raises :class:`PathNotAllowedError` (a :class:`PermissionError`) naming
    ``path``, the file opened and the roots.
    """
    allowed = resolve_allowed_roots(roots)
    opened = opened_file_path(fd)
    if opened is None or not allowed or any(_is_inside(opened, root) for root in allowed):
        return opened
    if creating:
        where = f"would be created in {os.path.dirname(opened)!r}"
        outcome = "nothing was created"
    else:
        where = f"resolves to {opened!r} once opened"
        outcome = "the file was closed untouched"
    raise PathNotAllowedError(
        f"{what} {os.fspath(path)!r} {where}, outside the allowed roots "
        f"{', '.join(repr(root) for root in allowed)}: a symbolic link on the way was "
        f"changed after the path was checked; {outcome}. Find out who changes links in "
        "the data directories, or change the scan's filename"
    )


def _nearest_existing(path: str) -> str:
    """The longest prefix of the absolute path ``path`` that exists."""
    current = path
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def check_writable(path: StrPath) -> None:
    """Check that this process can create or overwrite the file ``path``.

    If ``path`` exists it must be writable itself; otherwise its nearest
    existing ancestor must be a directory this process may write into (that is
    where the missing directories and the file will be created). Symbolic links
    are followed.

    Raises :class:`PathNotAllowedError` (a :class:`PermissionError`). Note that
    for the superuser :func:`os.access` reports every local path as writable.
    """
    text = os.fspath(path)
    resolved = os.path.realpath(text)
    if os.path.exists(resolved):
        if not os.access(resolved, os.W_OK):
            raise PathNotAllowedError(
                f"no write permission on {resolved} (needed for {text}): "
                "change its permissions or the scan's filename"
            )
        return
    ancestor = _nearest_existing(resolved)
    if not os.path.isdir(ancestor):
        raise PathNotAllowedError(
            f"cannot create {text}: {ancestor} is not a directory; "
            "remove it or change the scan's filename"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PathNotAllowedError(f"no write permission in {ancestor} (needed for {text})")


def free_disk_space(path: StrPath) -> int:
    """Bytes free for this process on the file system that holds (or will hold) ``path``."""
    ancestor = _nearest_existing(os.path.realpath(os.fspath(path)))
    return shutil.disk_usage(ancestor).free


def _mount_point(path: str) -> str:
    current = _nearest_existing(path)
    while not os.path.ismount(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def check_disk_space(path: StrPath, required: float, recommended: float) -> str | None:
    """Check the free space on the file system of ``path`` against two thresholds.

    Thresholds are in MiB (1 MiB = 2**20 bytes); a threshold <= 0 disables
    that check. Raises :class:`DiskSpaceError` (an :class:`OSError`) when the
    free space is below ``required``; returns a warning message when it is
    below ``recommended``, and None otherwise.
    """
    if required <= 0 and recommended <= 0:
        return None
    text = os.fspath(path)
    resolved = os.path.realpath(text)
    free_mib = free_disk_space(resolved) / MIB
    if free_mib >= required and free_mib >= recommended:
        return None
    where = f"only {free_mib:.0f} MiB free on {_mount_point(resolved)} for {text}"
    if required > 0 and free_mib < required:
        raise DiskSpaceError(
            f"{where}; at least {required:g} MiB required: "
            "free space or lower required_disk_space"
        )
    return (
        f"{where}; {recommended:g} MiB recommended: "
        "free space or lower recommended_disk_space"
    )


def _redact(command: str) -> str:
    """``command`` with the passwords of URLs (``scheme://user:password@host``) hidden:
    command lines end up in error messages, logs and device attributes."""
    command = re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", command)
    return re.sub(r"(password=)[^&\s]*", r"\1***", command)


def _command_line(pid: str) -> str:
    try:
        with open(os.path.join(_PROC, pid, "cmdline"), "rb") as stream:
            raw = stream.read()
        command = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
        if command:
            return _redact(command)
        with open(os.path.join(_PROC, pid, "comm"), "rb") as stream:
            return stream.read().decode(errors="replace").strip()
    except OSError:
        return "?"


def _holds(pid: str, target: str) -> bool:
    fd_dir = os.path.join(_PROC, pid, "fd")
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(os.path.join(fd_dir, fd)) == target:
                return True
        except OSError:
            continue
    return False


def lock_holders(path: StrPath, include_self: bool = False) -> list[tuple[int, str]]:
    """Processes that have the file ``path`` open, as ``(pid, command line)`` sorted by pid.

    Found by scanning the ``/proc/<pid>/fd`` symbolic links, so it only sees
    processes this process may inspect (others are skipped) and only works on
    Linux: where ``/proc`` is unavailable the result is ``[]``. The command
    line falls back to the process name when it is empty. This process is left
    out unless ``include_self`` is true.
    """
    if not os.path.isdir(os.path.join(_PROC, "self", "fd")):
        return []
    target = os.path.realpath(os.fspath(path))
    own = os.getpid()
    try:
        entries = os.listdir(_PROC)
    except OSError:
        return []
    holders = []
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == own and not include_self:
            continue
        if _holds(entry, target):
            holders.append((pid, _command_line(entry)))
    return sorted(holders)


def describe_holders(path: StrPath, include_self: bool = False) -> str:
    """A phrase for error messages about a locked file.

    For example ``"held by pid 123 (python3 reader.py)"`` or, when
    :func:`lock_holders` finds nobody, ``"no process found holding it"``.
    """
    holders = lock_holders(path, include_self=include_self)
    if not holders:
        return "no process found holding it"
    return "held by " + ", ".join(f"pid {pid} ({command})" for pid, command in holders)


def makedirs_allowed(path: StrPath, roots: Iterable[StrPath], mode: int = 0o777) -> str:
    """Create the directory ``path`` (and its parents) if it is inside ``roots``.

    Checks with :func:`check_path_allowed` first, then creates the resolved
    path; an existing directory is fine. Returns the resolved path.
    """
    resolved = check_path_allowed(path, roots, what="directory")
    os.makedirs(resolved, mode=mode, exist_ok=True)
    return resolved
