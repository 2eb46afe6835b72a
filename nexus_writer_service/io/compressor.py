"""Threads that compress whole chunks off the HDF5 thread.

A :class:`CompressionPool` is a few worker threads shared by every scan file of a
session writer: however many scans run at once, the session compresses on at most
``workers`` threads. Each scan file has its own :class:`ChunkCompressor`, a client
of the pool: the HDF5 thread (the owner of the file) hands it each whole chunk of a
compressed dataset with the function that writes the compressed bytes; the pool's
threads encode chunks in parallel (zlib, numpy and bitshuffle release the GIL, see
:mod:`.codecs`), and the HDF5 thread writes the results, in the order the chunks
were submitted, whenever it submits another (:meth:`ChunkCompressor.drain`) and all
of them at a flush (``drain(wait=True)``). Submission order matters: a partial
chunk written at a flush and the same chunk written whole later land in that order.

No scan starves the others: the pool takes one chunk from each client that has
chunks waiting in turn (round robin), so a scan that just handed over many chunks
delays another's flush by at most one chunk per busy scan; and each client holds at
most ``max_pending_bytes`` of chunks not yet written (beyond, ``submit`` waits for
its oldest), which bounds the memory a fast stream takes.

Ownership: the pool belongs to its creator (the session writer), which closes it
once its scan files are closed; its threads start with the first chunk and stop at
:meth:`CompressionPool.close`. A :class:`ChunkCompressor` belongs to one scan file
and its thread; only the encoding runs on the pool's threads, never HDF5.
:meth:`ChunkCompressor.close` drops the chunks not written yet (as unflushed points
are when a file is closed without flushing), and closes the pool too when it made
its own (a file used without a session writer).
"""

from __future__ import annotations

import collections
import os
import threading
from concurrent.futures import CancelledError, Future
from typing import Any, Callable

from ..errors import NexusWriterError
from .checks import MIB
from .codecs import ChunkCodec

__all__ = ["ChunkCompressor", "CompressionPool", "MAX_PENDING_BYTES", "default_workers"]

#: The most bytes of chunks one client submitted and did not write yet: beyond,
#: submit waits for the oldest (the memory the compression of a fast stream may hold).
MAX_PENDING_BYTES = 64 * MIB
#: Seconds :meth:`CompressionPool.close` waits for each thread to end its chunk.
_JOIN_TIMEOUT = 30.0

_Job = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...]]


def default_workers() -> int:
    """Threads of a pool: one per core, 2 to 4."""
    return max(2, min(4, os.cpu_count() or 2))


class CompressionPool:
    """``workers`` threads encoding the chunks of any number of clients, fairly.

    Thread-safe: clients submit from their own threads. :meth:`close` is idempotent.
    """

    def __init__(self, workers: int | None = None, name: str = "chunk-compressor") -> None:
        self.workers = workers or default_workers()
        self.name = name
        self._cond = threading.Condition()
        #: the jobs waiting, per client; ``_turns``: clients with jobs, in turn order
        self._queues: dict[int, collections.deque[_Job]] = {}
        self._turns: collections.deque[int] = collections.deque()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, client: object, fn: Callable[..., Any], *args: Any) -> "Future[Any]":
        """``fn(*args)`` on a pool thread, after the jobs ``client`` submitted before
        it started and in turn with the other clients' jobs.

        :raises NexusWriterError: the pool was closed (its session writer stopped)
        """
        future: Future[Any] = Future()
        key = id(client)
        with self._cond:
            if self._closed:
                raise NexusWriterError(
                    f"{self.name}: the compression threads were stopped (their session "
                    "writer stopped); start the writer again to complete the file")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = collections.deque()
            if not queue:
                self._turns.append(key)
            queue.append((future, fn, args))
            if len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self.name}-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
            else:
                self._cond.notify()
        return future

    def forget(self, client: object) -> None:
        """Cancel the jobs of ``client`` not started yet."""
        with self._cond:
            queue = self._queues.pop(id(client), None)
            if queue:
                self._turns.remove(id(client))
                for future, _, _ in queue:
                    future.cancel()

    def _next(self) -> _Job | None:
        """The next job, the clients in turn (None: closed)."""
        with self._cond:
            while not self._turns:
                if self._closed:
                    return None
                self._cond.wait()
            key = self._turns.popleft()
            queue = self._queues[key]
            job = queue.popleft()
            if queue:
                self._turns.append(key)
            else:
                del self._queues[key]
            return job

    def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the client, raised by its drain
                future.set_exception(exc)
            else:
                future.set_result(result)

    @property
    def threads(self) -> list[threading.Thread]:
        """Its threads still running."""
        return [t for t in self._threads if t.is_alive()]

    def close(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Cancel the jobs not started, let each thread end the one it runs, and stop
        the threads (waiting at most ``timeout`` seconds for each). Idempotent."""
        with self._cond:
            self._closed = True
            for queue in self._queues.values():
                for future, _, _ in queue:
                    future.cancel()
            self._queues.clear()
            self._turns.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def __enter__(self) -> "CompressionPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ChunkCompressor:
    """The chunks of one scan file, encoded by a pool's threads, written by the owner
    in order. ``pool``: a shared pool (else one of ``workers`` threads of its own)."""

    def __init__(self, workers: int | None = None,
                 max_pending_bytes: int = MAX_PENDING_BYTES,
                 pool: CompressionPool | None = None) -> None:
        self._own_pool = pool is None
        self.pool = CompressionPool(workers) if pool is None else pool
        self.max_pending_bytes = max_pending_bytes
        self._queue: collections.deque[tuple[Future[Any], Callable[[Any], None], int]] = \
            collections.deque()
        self._pending = 0
        #: chunks and bytes written so far, before and after compression
        self.chunks = 0
        self.raw_bytes = 0
        self.stored_bytes = 0

    def submit(self, codec: ChunkCodec, chunk: Any, write: Callable[[Any], None]) -> None:
        """Encode ``chunk`` (not to be changed any more by the caller) on a pool
        thread, then ``write(encoded)`` on this thread, after the chunks submitted
        before.

        :raises NexusWriterError: the pool was closed
        """
        self.call(codec.encode, (chunk,), write, int(chunk.nbytes))

    def call(self, encode: Callable[..., Any], args: tuple[Any, ...],
             write: Callable[[Any], None], nbytes: int) -> None:
        """:meth:`submit` of any encoding: ``write(encode(*args))``, ``nbytes`` the
        bytes of the chunk it encodes; ``encode`` returns bytes or an array.

        :raises NexusWriterError: the pool was closed
        """
        self._queue.append((self.pool.submit(self, encode, *args), write, nbytes))
        self._pending += nbytes
        self.drain(wait=False)
        while self._pending > self.max_pending_bytes and self._queue:
            self._write_oldest()

    def drain(self, wait: bool = True) -> None:
        """Write the chunks encoded so far (``wait``: every chunk submitted), in order.

        :raises Exception: what encoding or writing a chunk raised
        :raises NexusWriterError: the pool was closed before it encoded a chunk
        """
        queue = self._queue
        while queue and (wait or queue[0][0].done()):
            self._write_oldest()

    def _write_oldest(self) -> None:
        future, write, nbytes = self._queue.popleft()
        self._pending -= nbytes
        try:
            encoded = future.result()
        except CancelledError:
            raise NexusWriterError(
                f"{self.pool.name}: a chunk was not compressed: the compression threads "
                "were stopped (their session writer stopped); start the writer again to "
                "complete the file") from None
        write(encoded)
        self.chunks += 1
        self.raw_bytes += nbytes
        # bytes, or an array or a partial chunk (their nbytes)
        self.stored_bytes += len(encoded) if isinstance(encoded, bytes) else encoded.nbytes

    @property
    def pending(self) -> int:
        """Chunks submitted and not written yet."""
        return len(self._queue)

    def close(self) -> None:
        """Drop the chunks not written (idempotent); stop the pool if it is its own."""
        self.pool.forget(self)
        for future, _, _ in self._queue:
            future.cancel()
        self._queue.clear()
        self._pending = 0
        if self._own_pool:
            self.pool.close()
