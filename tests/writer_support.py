"""Helpers for tests of the NeXus writers (imported by test modules, not collected)."""

from __future__ import annotations

import contextlib
import time
import zlib
from typing import Any, Iterator, Mapping

import gevent
import h5py
import numpy as np

from nexus_writer_service.io import SaveOptions
from nexus_writer_service.subscribers import NexusSessionWriter, ScanRecord


@contextlib.contextmanager
def session_writer(redis_url: str, session: str, options: SaveOptions | None = None,
                   **kwargs: Any) -> Iterator[NexusSessionWriter]:
    """A started NexusSessionWriter in the calling thread; stopped (and joined) at exit."""
    writer = NexusSessionWriter(session, redis_url, options=options, **kwargs)
    writer.start(wait=True, timeout=10)
    try:
        yield writer
    finally:
        writer.stop(wait=True, timeout=60)


def wait_until(condition: Any, timeout: float = 30.0, what: str = "condition") -> None:
    """Let the calling thread's hub run until ``condition()`` is true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        gevent.sleep(0.05)


def wait_scans_done(writer: NexusSessionWriter, count: int, timeout: float = 60.0
                    ) -> list[ScanRecord]:
    """Wait until ``count`` scans are known and all their writers have finished."""
    wait_until(lambda: len(writer.scans()) >= count
               and all(r.writer.done() for r in writer.scans()), timeout,
               f"{count} scans written by {writer.name} "
               f"(now: {[r.as_dict()['state'] for r in writer.scans()]})")
    return writer.scans()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def text(value: Any) -> str:
    """A text value read from HDF5 (bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def frame_checksums(frames: np.ndarray) -> np.ndarray:
    """The CRC-32 of each frame's bytes, as the simulator's truth file keeps them."""
    return np.array([zlib.crc32(np.ascontiguousarray(f).tobytes()) for f in frames],
                    dtype=np.uint32)


def assert_sequence_links(h5: h5py.File, linked: Mapping[str, str], external: tuple[str, str],
                          missing: str) -> None:
    """Entry ``1.1`` of ``h5`` is a sequence that SUCCEEDED, whose ``scans`` collection
    holds soft links to the entries ``linked`` (entry name: scan key) at the root and the
    note of the ``missing`` scan (not in Redis); the ``external`` entry (entry name, file
    name), saved in another file, is linked at the root as the classic writer does."""
    scans = h5["1.1/scans"]
    assert text(scans.attrs["NX_class"]) == "NXcollection"
    assert sorted(scans) == sorted([*linked, missing])
    for name, key in linked.items():
        link = scans.get(name, getlink=True)
        assert isinstance(link, h5py.SoftLink) and link.path == f"/{name}"
        assert text(scans[name].attrs["scan_key"]) == key
    name, filename = external
    link = h5.get(name, getlink=True)
    assert isinstance(link, h5py.ExternalLink)
    assert (link.filename, link.path) == (filename, f"/{name}")
    note = text(scans[missing][()])
    assert note.startswith("not linked: ") and "not in Redis" in note
    assert text(h5["1.1/writer/status"][()]) == "SUCCEEDED"
