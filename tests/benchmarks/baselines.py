"""What the hardware and the raw libraries do with the same bytes the writer moves.

Each function returns a :class:`Timing` (wall and CPU seconds of this process, and
the system part of the CPU; nothing else runs in it meanwhile):

* :func:`disk`: ``dd``-like sequential write of ``nbytes`` to a directory, in 1 MiB
  ``os.write`` calls, then ``os.fsync``;
* :func:`h5_write`: raw h5py writing arrays chunk-aligned into resizable datasets
  with the writer's chunking (``io.layout.chunk_rows`` and ``chunk_bytes``);
* :func:`h5_nexus_tree`: the same, in the groups, links and attributes of the
  writer's NeXus tree;
* :func:`redis_xadd` / :func:`redis_xrange`: raw redis-py moving the same entries
  (pipelined XADD; XRANGE in pages);
* :func:`h5_virtual`: raw h5py building one virtual dataset over a detector's files;
* :func:`redis_round_trip`: XADD in one thread seen by a blocking XREAD in another.

:func:`warm_up_memory` runs before each timed file write, of a baseline or of the
writer.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import h5py
import numpy as np
import redis

from nexus_writer_service.io.chunking import DEFAULT_CHUNK_BYTES
from nexus_writer_service.io.layout import chunk_rows

MiB = 1 << 20


@dataclass
class Timing:
    wall: float
    cpu: float
    #: the system (kernel) part of ``cpu``, where known
    sys: float | None = None


def timed(func: Callable[[], Any]) -> Timing:
    cpu = time.process_time()
    kernel = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    start = time.perf_counter()
    func()
    return Timing(time.perf_counter() - start, time.process_time() - cpu,
                  resource.getrusage(resource.RUSAGE_SELF).ru_stime - kernel)


def disk(directory: str, nbytes: int) -> Timing:
    """Write ``nbytes`` in 1 MiB blocks to a new file in ``directory``, fsync, remove."""
    block = os.urandom(MiB)
    path = os.path.join(directory, f"dd_{os.getpid()}.bin")

    def write() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            left = nbytes
            while left > 0:
                left -= os.write(fd, block if left >= MiB else block[:left])
            os.fsync(fd)
        finally:
            os.close(fd)

    try:
        return timed(write)
    finally:
        os.unlink(path)


def warm_up_memory(directory: str, nbytes: int) -> None:
    """Write ``nbytes`` to a file in ``directory`` and remove it, untimed, just before
    a timed write of about as many bytes: the pages the timed write takes for the
    page cache (and the memory its process takes) are then pages just freed.

    In a virtual machine, the first use of memory that stayed free for a while may
    cost the guest several times the system time of reusing memory freed a moment
    ago: writing the same 80 MB from a warm buffer took 0.015-0.24 s of system time
    in consecutive runs. Each timed measure that writes a file (raw h5py, the
    writer) starts after this, so that none of them gets that cost and another not."""
    block = bytes(MiB)
    path = os.path.join(directory, f"warm_{os.getpid()}.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for offset in range(0, nbytes, MiB):
            os.pwrite(fd, block, offset)
    finally:
        os.close(fd)
        os.unlink(path)


def h5_write(path: str, arrays: dict[str, Callable[[int, int], np.ndarray]], npoints: int,
             dtypes: dict[str, np.dtype[Any]], shapes: dict[str, tuple[int, ...]],
             chunk_bytes: int | None = None) -> Timing:
    """One resizable chunked dataset per array, written chunk by chunk.

    ``arrays[name](start, stop)`` returns points ``[start, stop)`` (so large data sets
    need not be held in memory); the file is removed afterwards.
    """
    chunk_bytes = chunk_bytes or DEFAULT_CHUNK_BYTES

    def write() -> None:
        with h5py.File(path, "w") as f:
            for name, get in arrays.items():
                dtype, shape = np.dtype(dtypes[name]), shapes[name]
                rows = chunk_rows(dtype.itemsize * int(np.prod(shape)), chunk_bytes, npoints)
                dset = f.create_dataset(name, shape=(0,) + shape, maxshape=(None,) + shape,
                                        dtype=dtype, chunks=(rows,) + shape)
                for s in range(0, npoints, rows):
                    stop = min(s + rows, npoints)
                    dset.resize(stop, axis=0)
                    dset[s:stop] = get(s, stop)

    try:
        return timed(write)
    finally:
        if os.path.exists(path):
            os.unlink(path)


def h5_nexus_tree(path: str, arrays: dict[str, Sequence[np.ndarray]],
                  chunk_bytes: int | None = None) -> Timing:
    """Raw h5py building the tree the writer makes for 0D channels, then writing
    ``arrays`` (pieces of each channel, joined first) chunk-aligned as
    :func:`h5_write` does: per channel an NXdetector
    group holding its dataset (with its ``channel`` attribute), a soft link in the
    entry's measurement group and one in its plot. What the NeXus structure costs
    beside the data; the file is removed afterwards."""
    chunk_bytes = chunk_bytes or DEFAULT_CHUNK_BYTES

    def write() -> None:
        with h5py.File(path, "w") as f:
            entry = f.create_group("1.1")
            groups = {name: entry.create_group(name) for name in
                      ("instrument", "measurement", "plot0D")}
            for group, nx_class in zip((entry, *groups.values()),
                                       ("NXentry", "NXinstrument", "NXcollection", "NXdata")):
                group.attrs["NX_class"] = nx_class
            names = list(arrays)
            groups["plot0D"].attrs["signal"] = names[0]
            groups["plot0D"].attrs["auxiliary_signals"] = names[1:]
            for name, pieces in arrays.items():
                values = np.concatenate(pieces)
                detector = groups["instrument"].create_group(name)
                detector.attrs["NX_class"] = "NXdetector"
                rows = chunk_rows(values.dtype.itemsize, chunk_bytes, len(values))
                dset = detector.create_dataset("data", shape=(0,), maxshape=(None,),
                                               dtype=values.dtype, chunks=(rows,))
                dset.attrs["channel"] = name
                groups["measurement"][name] = h5py.SoftLink(dset.name)
                groups["plot0D"][name] = h5py.SoftLink(dset.name)
                for s in range(0, len(values), rows):
                    stop = min(s + rows, len(values))
                    dset.resize(stop, axis=0)
                    dset[s:stop] = values[s:stop]

    try:
        return timed(write)
    finally:
        if os.path.exists(path):
            os.unlink(path)


def redis_xadd(client: redis.Redis, stream: str,
               entries: Iterable[dict[bytes, bytes]], window: int = 64) -> Timing:
    """XADD every entry, ``window`` commands per pipeline round trip."""

    def write() -> None:
        pipe = client.pipeline(transaction=False)
        pending = 0
        for fields in entries:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
            pending += 1
            if pending >= window:
                pipe.execute()
                pending = 0
        if pending:
            pipe.execute()

    return timed(write)


def redis_xrange(client: redis.Redis, stream: str, page: int = 1000,
                 dtype: str = "f8") -> tuple[Timing, int]:
    """XRANGE the whole stream in pages, ``np.frombuffer`` every ``d...`` field;
    also returns the number of bytes of data read."""
    got = [0]

    def read() -> None:
        start = "-"
        while True:
            entries: list[Any] = client.xrange(stream, min=start, max="+",
                                               count=page)  # type: ignore[assignment]
            for _, fields in entries:
                for field, value in fields.items():
                    if field[:1] == b"d":
                        got[0] += np.frombuffer(value, dtype=dtype).nbytes
            if len(entries) < page:
                return
            start = "(" + entries[-1][0].decode()

    return timed(read), got[0]


def h5_virtual(path: str, sources: Sequence[tuple[str, str, int]],
               frame_shape: tuple[int, ...], dtype: Any) -> Timing:
    """A virtual dataset over ``sources`` (file, dataset, frames) in a new file."""
    nframes = sum(n for _, _, n in sources)

    def build() -> None:
        layout = h5py.VirtualLayout(shape=(nframes,) + frame_shape, dtype=dtype)
        first = 0
        for filename, dataset, n in sources:
            layout[first:first + n] = h5py.VirtualSource(
                os.path.relpath(filename, os.path.dirname(path)), dataset,
                shape=(n,) + frame_shape)
            first += n
        with h5py.File(path, "w") as f:
            f.create_virtual_dataset("data", layout, fillvalue=0)

    try:
        return timed(build)
    finally:
        if os.path.exists(path):
            os.unlink(path)


def redis_round_trip(client: redis.Redis, url: str, stream: str, n: int,
                     interval: float) -> np.ndarray:
    """Milliseconds from XADD (every ``interval`` s) to a blocking XREAD seeing it."""
    reader = redis.Redis.from_url(url)
    seen: list[float] = []
    sent: list[float] = []
    ready = threading.Event()

    def read() -> None:
        last = "0-0"
        ready.set()
        while len(seen) < n:
            reply: Any = reader.xread({stream: last}, block=1000, count=1000)
            now = time.perf_counter()
            for _, entries in reply or ():
                for entry_id, _ in entries:
                    seen.append(now)
                    last = entry_id.decode()

    thread = threading.Thread(target=read, name="raw-xread", daemon=True)
    thread.start()
    ready.wait(5)
    try:
        start = time.perf_counter()
        for i in range(n):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent.append(time.perf_counter())
            client.xadd(stream, {b"d": b"x" * 8})
        thread.join(30)
    finally:
        client.delete(stream)
        reader.close()
    count = min(len(seen), len(sent))
    return (np.asarray(seen[:count]) - np.asarray(sent[:count])) * 1e3


def blocks(npoints: int, block: int) -> Iterator[tuple[int, int]]:
    for start in range(0, npoints, block):
        yield start, min(start + block, npoints)
