"""Fixtures of the end-to-end tests of ``NexusWriterService`` and ``RegisterNexusWriter``.

The sqlite Tango database (``tango_database``) is shared by the whole run, so every
test registers its devices under names of its own (:func:`unique_name`). Servers
are real ``NexusWriterService`` child processes (:class:`ServerProcess`), always
stopped by PID (SIGTERM, SIGKILL after 30 s) when the test ends; scans are
published by :func:`~nexus_writer_service.simulation.simulate` in threads that
are joined when the test ends.

* ``names(prefix)``: a name unique in the run; ``poll(condition, timeout, what)``.
* ``tango_host``: ``host:port`` of the database, also set as ``TANGO_HOST``.
* ``tango_db``: a :class:`tango.Database` client of it.
* ``register_writer(session=None, instance=None, **properties)``: register a
  NexusWriter device (unique names by default) writing to ``redis_url``.
* ``start_server(instance, *devices, args=())``: start the server, wait until the
  devices answer; returns the :class:`ServerProcess`.
* ``writer`` / ``server``: one registered device / it, served.
* ``scans``: ``scans.start(writer, npoints=..., count_time=...)`` publishes one
  "long" scan in a thread; ``scans.join()`` waits for every scan started.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import tango

from nexus_writer_service.embedded import EmbeddedTangoDatabase
from nexus_writer_service.simulation import PublishedScan, SimulationOptions, simulate
from tango_devices.process import ServerProcess, device_proxy
from tango_devices.register import register_nexus_writer

_NAMES = itertools.count(1)
_STOP_TIMEOUT = 30.0


def unique_name(prefix: str) -> str:
    """A name no other test of this run uses (valid as session, instance and member)."""
    return f"{prefix}{os.getpid()}n{next(_NAMES)}"


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something true; that value is returned."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = condition()
        except tango.DevFailed as exc:
            last = exc.args[0].desc.strip()
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")
        time.sleep(0.05)


@pytest.fixture
def names() -> Callable[[str], str]:
    """:func:`unique_name`, for test modules (they do not import this conftest)."""
    return unique_name


@pytest.fixture
def poll() -> Callable[..., Any]:
    """:func:`wait_for`, for test modules."""
    return wait_for


@dataclass(frozen=True)
class Writer:
    """A registered NexusWriter device and where its scans go."""

    session: str
    instance: str
    device: str
    redis_url: str
    root: Path


@pytest.fixture
def tango_host(tango_database: EmbeddedTangoDatabase, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TANGO_HOST", tango_database.tango_host)
    return tango_database.tango_host


@pytest.fixture
def tango_db(tango_host: str) -> tango.Database:
    host, port = tango_host.rsplit(":", 1)
    return tango.Database(host, int(port))


@pytest.fixture
def register_writer(tango_db: tango.Database, redis_url: str,
                    tmp_path: Path) -> Callable[..., Writer]:
    def register(session: Optional[str] = None, instance: Optional[str] = None,
                 **properties: Any) -> Writer:
        session = session or unique_name("s")
        instance = instance or unique_name("i")
        done = register_nexus_writer(session, member=session, instance=instance,
                                     redis_url=redis_url, options=properties,
                                     database=tango_db)
        root = tmp_path / "data"
        return Writer(session, instance, done.device, redis_url, root)
    return register


@pytest.fixture
def writer(register_writer: Callable[..., Writer]) -> Writer:
    return register_writer()


@pytest.fixture
def start_server(tango_host: str, tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(instance: str, *devices: str, args: tuple[str, ...] = ("--log", "debug"),
              env: Optional[dict[str, str]] = None) -> ServerProcess:
        output = tmp_path / f"server-{instance}-{len(started)}.out"
        process = ServerProcess(instance, tango_host, args=args, output=output, env=env)
        started.append(process)
        process.start()
        for device in devices:
            process.wait_ready(device, timeout=60)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop(timeout=_STOP_TIMEOUT)


@pytest.fixture
def server(writer: Writer, start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server(writer.instance, writer.device)


@pytest.fixture
def proxy(server: ServerProcess, writer: Writer) -> tango.DeviceProxy:
    return device_proxy(server.tango_host, writer.device)


@dataclass
class ScanThreads:
    """Publishes "long" scans in threads; every thread is joined at teardown."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    published: list[PublishedScan] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def start(self, writer: Writer, *, session: Optional[str] = None, npoints: int = 20,
              count_time: float = 0.0) -> threading.Thread:
        options = SimulationOptions(session=session or writer.session,
                                    redis_url=writer.redis_url, root=str(writer.root),
                                    scans=("long",), npoints=npoints, count_time=count_time)

        def run() -> None:
            try:
                self.published.extend(simulate(options, stop=self.stop))
            except BaseException as exc:  # reported by join()
                self.errors.append(exc)

        thread = threading.Thread(target=run, name=f"simulate-{options.session}")
        self.threads.append(thread)
        thread.start()
        return thread

    def join(self, timeout: float = 60.0) -> list[PublishedScan]:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"scans still published after {timeout} s: {alive}"
        assert not self.errors, f"publishing failed: {self.errors!r}"
        return list(self.published)


@pytest.fixture
def scans() -> Iterator[ScanThreads]:
    threads = ScanThreads()
    try:
        yield threads
    finally:
        threads.stop.set()
        for thread in threads.threads:
            thread.join(_STOP_TIMEOUT)
