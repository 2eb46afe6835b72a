"""Helpers for the tests of the ``NexusWriter`` device in a ``DeviceTestContext``.

* :func:`writer_device`: the real device in a child process (no Tango database).
* :class:`PublishedScans`: simulated scans published in a thread, always joined.
* :func:`wait_for`: poll a condition until a deadline (never sleep-as-assertion).
* :func:`dev_error`: the first ``DevError`` of the ``DevFailed`` a call raises.
* :func:`file_points`: points of every measurement dataset of a file's entry.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from typing import Any, Callable, Iterator, Optional

import h5py
import pytest
import tango
from tango.test_context import DeviceTestContext

from nexus_writer_service.simulation import PublishedScan, SimulationOptions, simulate
from tango_devices.nexus_writer import NexusWriter

DEVICE = "test/nexuswriter/1"
_JOIN_TIMEOUT = 30.0


@contextlib.contextmanager
def writer_device(**properties: Any) -> Iterator[tango.DeviceProxy]:
    """A ``NexusWriter`` named :data:`DEVICE` served by a child process, with ``properties``.

    The child is forked from a fork server (a clean process started once), never from
    the test process, which runs omniORB's threads and holds other tests' clients. A
    server forked from the test process hung at start-up now and then: a garbage
    collection in the child destroyed a ``DeviceProxy`` inherited from the test
    process, whose destructor waited for an omniORB mutex held, at the fork, by a
    thread that does not exist in the child. The test then failed, and pytest never
    exited (it waits for its child processes)."""
    start_method = multiprocessing.get_start_method()
    multiprocessing.set_forkserver_preload(["tango_devices.nexus_writer", "tango.test_context"])
    multiprocessing.set_start_method("forkserver", force=True)
    try:
        context = DeviceTestContext(NexusWriter, device_name=DEVICE, process=True,
                                    properties=properties, timeout=30)
        proxy = context.__enter__()
    finally:
        multiprocessing.set_start_method(start_method, force=True)
    with contextlib.ExitStack() as stack:
        stack.push(context.__exit__)
        yield proxy


class PublishedScans:
    """Publishes scans of ``kinds`` in a thread (``simulate``); joined on exit.

    Leaving the ``with`` block early aborts the scan being published (the thread's
    stop handle), so a failing test never leaves a publisher behind.
    """

    def __init__(self, redis_url: str, session: str, root: str, *kinds: str,
                 npoints: Optional[int] = None, count_time: float = 0.0) -> None:
        self.options = SimulationOptions(session=session, redis_url=redis_url, root=root,
                                         scans=kinds, npoints=npoints, count_time=count_time)
        self.stop = threading.Event()
        self.published: list[PublishedScan] = []
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name=f"simulate-{session}")

    def _run(self) -> None:
        try:
            self.published.extend(simulate(self.options, stop=self.stop))
        except BaseException as exc:  # reported by join()
            self.errors.append(exc)

    def __enter__(self) -> "PublishedScans":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(_JOIN_TIMEOUT)

    @property
    def running(self) -> bool:
        """Whether scans are still being published."""
        return self._thread.is_alive()

    def join(self, timeout: float = _JOIN_TIMEOUT) -> list[PublishedScan]:
        """Wait for the publisher to finish; its scans, or AssertionError."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"scans still published after {timeout} s"
        assert not self.errors, f"publishing failed: {self.errors!r}"
        return list(self.published)


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``condition`` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or condition} not reached within {timeout} s "
                                 f"(last: {value!r})")
        time.sleep(0.02)


def dev_error(call: Callable[..., Any], *args: Any) -> tango.DevError:
    """Call ``call(*args)``, which must raise ``DevFailed``; return its first error."""
    with pytest.raises(tango.DevFailed) as info:
        call(*args)
    return info.value.args[0]


def _only_entry(h5: h5py.File) -> str:
    entries = list(h5)
    assert len(entries) == 1, f"{h5.filename}: one entry expected, found {entries}"
    return str(entries[0])


def file_points(filename: str) -> dict[str, int]:
    """Length of every dataset of the measurement of the file's only entry, by name."""
    with h5py.File(filename, "r", locking=False) as h5:
        measurement = h5[f"{_only_entry(h5)}/measurement"]
        return {name: int(measurement[name].shape[0]) for name in measurement}


def file_status(filename: str) -> str:
    """The writer status stored in the file's only entry (RUNNING, SUCCEEDED, FAILED...)."""
    with h5py.File(filename, "r", locking=False) as h5:
        value = h5[f"{_only_entry(h5)}/writer/status"][()]
    return value.decode() if isinstance(value, bytes) else str(value)
