"""Child processes that die with the process that started them (Linux).

The servers this project starts for its users (the embedded Redis and Tango database,
``NexusWriterService`` under the demo or the tests) must not outlive their parent,
however it ends: SIGINT, SIGTERM or SIGKILL. A SIGKILLed parent cleans up nothing,
so the kernel has to do it: :func:`guarded` wraps a command line so that it first
asks for ``PR_SET_PDEATHSIG`` (a signal sent to it when its parent dies, kept across
``execve``), checks that its parent is still the one that started it (it may have
died in between), and then executes the command in place: same PID, same
arguments, no extra process.

``python -m nexus_writer_service.die_with_parent PPID SIGNAL COMMAND...`` is that
wrapper. Linux sends the signal when the *thread* that started the child exits, so
start guarded children from a thread that lives as long as they should (the main
thread). On other systems :func:`guarded` returns the command unchanged.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Sequence

__all__ = ["guarded", "main"]

_PR_SET_PDEATHSIG = 1


def guarded(argv: Sequence[str], sig: int = signal.SIGTERM) -> list[str]:
    """``argv`` run so that it gets ``sig`` when this process (thread) dies."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-m", __name__, str(os.getpid()), str(int(sig)), *argv]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3:
        print(f"usage: python -m {__name__} PPID SIGNAL COMMAND...", file=sys.stderr)
        return 2
    parent, sig, command = int(args[0]), int(args[1]), args[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        print(f"{__name__}: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}",
              file=sys.stderr)
        return 1
    if os.getppid() != parent:
        return 128 + sig  # the parent died before the request: nothing to run for
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"{__name__}: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return 127
    return 0  # not reached: execvp replaced this process


if __name__ == "__main__":
    sys.exit(main())
