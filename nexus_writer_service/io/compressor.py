"""A small pool of threads that compresses whole chunks off the HDF5 thread.

The HDF5 thread (the owner of a scan file) hands each whole chunk of a compressed
dataset to :meth:`ChunkCompressor.submit` with the function that writes the
compressed bytes; worker threads encode chunks in parallel (zlib, numpy and
bitshuffle release the GIL, see :mod:`.codecs`), and the HDF5 thread writes the
results, in the order the chunks were submitted, whenever it submits another
(:meth:`ChunkCompressor.drain`) and all of them at a flush
(``drain(wait=True)``). Submission order matters: a partial chunk written at a
flush and the same chunk written whole later land in that order.

Ownership: one :class:`ChunkCompressor` belongs to one scan file and its thread;
only the encoding runs on the workers, never HDF5. :meth:`close` stops the workers
(idempotent); chunks not written by then are dropped, as unflushed points are when
a file is closed without flushing.
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from .checks import MIB
from .codecs import ChunkCodec

__all__ = ["ChunkCompressor", "MAX_PENDING_BYTES", "default_workers"]

#: The most bytes of chunks submitted and not written yet: beyond, submit waits for
#: the oldest (the memory the compression of a fast stream may hold).
MAX_PENDING_BYTES = 64 * MIB


def default_workers() -> int:
    """Threads of a pool: one per core, 2 to 4."""
    return max(2, min(4, os.cpu_count() or 2))


class ChunkCompressor:
    """Chunks encoded by ``workers`` threads, written by the owner in order."""

    def __init__(self, workers: int | None = None,
                 max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self.workers = workers or default_workers()
        self.max_pending_bytes = max_pending_bytes
        self._pool: ThreadPoolExecutor | None = None
        self._queue: collections.deque[tuple[Future[Any], Callable[[Any], None], int]] = \
            collections.deque()
        self._pending = 0
        #: chunks and bytes written so far, before and after compression
        self.chunks = 0
        self.raw_bytes = 0
        self.stored_bytes = 0

    def submit(self, codec: ChunkCodec, chunk: Any, write: Callable[[Any], None]) -> None:
        """Encode ``chunk`` (not to be changed any more by the caller) on a worker,
        then ``write(encoded)`` on this thread, after the chunks submitted before."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="chunk-compressor")
        nbytes = int(chunk.nbytes)
        self._queue.append((self._pool.submit(codec.encode, chunk), write, nbytes))
        self._pending += nbytes
        self.drain(wait=False)
        while self._pending > self.max_pending_bytes and self._queue:
            self._write_oldest()

    def drain(self, wait: bool = True) -> None:
        """Write the chunks encoded so far (``wait``: every chunk submitted), in order.

        :raises Exception: what encoding or writing a chunk raised
        """
        queue = self._queue
        while queue and (wait or queue[0][0].done()):
            self._write_oldest()

    def _write_oldest(self) -> None:
        future, write, nbytes = self._queue.popleft()
        self._pending -= nbytes
        encoded = future.result()
        write(encoded)
        self.chunks += 1
        self.raw_bytes += nbytes
        self.stored_bytes += len(encoded) if isinstance(encoded, bytes) else encoded.nbytes

    @property
    def pending(self) -> int:
        """Chunks submitted and not written yet."""
        return len(self._queue)

    def close(self) -> None:
        """Stop the workers (idempotent); chunks not written are dropped."""
        for future, _, _ in self._queue:
            future.cancel()
        self._queue.clear()
        self._pending = 0
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
