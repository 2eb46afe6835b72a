"""NexusWriter device servers for the benchmarks, and a client that times its reads.

:func:`running_devices` starts the embedded sqlite Tango database, registers one
``NexusWriter`` per session and runs each in a ``NexusWriterService`` process of its
own, as a beamline control room does; :func:`sample` reads every ``PERIOD`` seconds
and times each read. Used by :mod:`.bench_device`, :mod:`.bench_devices` and
scenario 7 of :mod:`.system`.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
import tango

from nexus_writer_service.embedded import EmbeddedTangoDatabase
from tango_devices.process import ServerProcess
from tango_devices.register import register_nexus_writer

#: Seconds between two reads of :func:`sample`.
PERIOD = 0.010


def sample(reads: Union[Callable[[], object], Sequence[Callable[[], object]]],
           until: Callable[[], bool], limit: int, sent: Optional[list[float]] = None
           ) -> np.ndarray:
    """Call ``reads`` (one, or several in turn) every PERIOD seconds until ``until()``
    or ``limit`` reads; ms each. ``sent``, when given, gets the ``perf_counter()``
    time at which each read began."""
    calls = [reads] if callable(reads) else list(reads)
    times: list[float] = []
    next_time = time.perf_counter()
    while len(times) < limit and not until():
        read = calls[len(times) % len(calls)]
        start = time.perf_counter()
        read()
        times.append((time.perf_counter() - start) * 1e3)
        if sent is not None:
            sent.append(start)
        next_time += PERIOD
        time.sleep(max(0.0, next_time - time.perf_counter()))
    return np.asarray(times)


@contextmanager
def running_devices(work: Path, url: str, sessions: Sequence[str],
                    options: Optional[dict[str, Any]] = None,
                    module: str = ServerProcess.MODULE, env: Optional[dict[str, str]] = None
                    ) -> Iterator[list[tuple[ServerProcess, tango.DeviceProxy]]]:
    """The sqlite Tango database and one ``NexusWriterService`` per session (device
    ``id00/bliss_nxwriter/<session>``, files allowed under ``work``, save ``options``
    besides), each with its proxy once it answers; all stopped on exit. ``module``
    and ``env``: see :class:`~tango_devices.process.ServerProcess`."""
    with ExitStack() as stack:
        database = stack.enter_context(EmbeddedTangoDatabase(workdir=work / "tango"))
        host, port = database.tango_host.split(":")
        db = tango.Database(host, int(port))
        servers = []
        for session in sessions:
            register_nexus_writer(session, redis_url=url, database=db,
                                  options={"allowed_roots": [str(work)], **(options or {})})
            servers.append(stack.enter_context(ServerProcess(
                session, database.tango_host, args=["--log=warning"],
                output=work / f"{session}.out", module=module, env=env)))
        yield [(server, server.wait_ready(f"id00/bliss_nxwriter/{session}"))
               for server, session in zip(servers, sessions)]


@contextmanager
def running_device(work: Path, url: str, session: str = "bench"
                   ) -> Iterator[tuple[ServerProcess, tango.DeviceProxy]]:
    """:func:`running_devices` for one session."""
    with running_devices(work, url, [session]) as devices:
        yield devices[0]
