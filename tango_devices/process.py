"""Run ``NexusWriterService`` as a child process (demo, tests, benchmarks).

``ServerProcess(instance, tango_host)`` starts the real entry point (or ``module``,
a wrapper of it taking the same arguments) with ``TANGO_HOST`` set, waits until a
device answers, and stops the process by its PID (SIGTERM, then SIGKILL after
``timeout``). Its output goes to ``output`` (a file), so a failed start can say why.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import tango

from nexus_writer_service.die_with_parent import guarded
from nexus_writer_service.errors import EmbeddedServerError

from .server import SERVER

__all__ = ["ServerProcess", "device_proxy"]


def device_proxy(tango_host: str, device: str, timeout: float = 10.0) -> tango.DeviceProxy:
    """A proxy to ``device`` through the database at ``tango_host`` (``host:port``)."""
    proxy = tango.DeviceProxy(f"tango://{tango_host}/{device}")
    proxy.set_timeout_millis(int(timeout * 1000))
    return proxy


class ServerProcess:
    """``NexusWriterService <instance> [args]`` in a child process."""

    #: The module run with ``python -m``: the server's entry point.
    MODULE = "tango_devices.server"

    def __init__(self, instance: str, tango_host: str, *, args: Sequence[str] = (),
                 output: str | os.PathLike[str], env: Optional[dict[str, str]] = None,
                 module: str = MODULE) -> None:
        self.instance = instance
        self.module = module
        self.tango_host = tango_host
        self.args = list(args)
        self.output = Path(output)
        self.env = dict(os.environ if env is None else env, TANGO_HOST=tango_host)
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process is not None else None

    def start(self) -> "ServerProcess":
        command = [sys.executable, "-m", self.module, self.instance, *self.args]
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen(guarded(command), stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env)
        return self

    def tail(self, nbytes: int = 3000) -> str:
        try:
            data = self.output.read_bytes()
        except OSError:
            return ""
        return data[-nbytes:].decode(errors="replace")

    def wait_ready(self, device: str, timeout: float = 60.0) -> tango.DeviceProxy:
        """Wait until ``device`` answers with a state other than INIT; returns its proxy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise EmbeddedServerError(
                    f"{SERVER} {self.instance} exited (status {code}) before {device} "
                    f"answered; its output ({self.output}):\n{self.tail()}")
            try:
                proxy = device_proxy(self.tango_host, device)
                if proxy.state() != tango.DevState.INIT:
                    return proxy
            except tango.DevFailed as exc:
                last = exc.args[0].desc.strip()
            time.sleep(0.2)
        raise EmbeddedServerError(
            f"{device} did not answer within {timeout} s (last error: {last}); "
            f"output of {SERVER} ({self.output}):\n{self.tail()}")

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> Optional[int]:
        """Send ``sig`` and wait; SIGKILL after ``timeout``. Returns the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        return process.returncode

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
