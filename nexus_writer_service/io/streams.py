"""Chunked streams: a channel's points buffered and written into its dataset.

Writing is idempotent by point index: a block of points ``[first, first + n)``
always lands at rows ``[first, first + n)``, so a writer that replays a scan from
its beginning after a restart completes the file without doubling anything.
Points are held per channel and written in chunk-aligned pieces; whatever is held
is written by ``flush``, which the scan file calls at least every ``flush_period``
seconds, so readers see data while the scan runs. A periodic flush may leave the
chunk begun of a compressed stream for the next one when, at the rate its points
come, it fills up before then (see :meth:`Stream.flush`): each received block
carries a *mark* (any value, its source's order, e.g. the writer's event number and
the time it came), and the stream tells the mark of the first point it did not
write (:attr:`Stream.unflushed`), so its owner acknowledges nothing from there on.

Ownership: a stream belongs to the thread that owns its file; nothing here is
thread-safe and nothing here talks to Redis. HDF5 is reached through
:mod:`._lowlevel` where h5py's high-level API costs more than the write.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from typing import Any, Sequence

import h5py
import numpy as np

from .checks import MIB
from .codecs import ChunkCodec
from .compressor import ChunkCompressor
from .layout import StackPlan, StreamPlan
from .partial_chunks import (MAX_PIECES, MIN_CHUNK_BYTES, PartialChunk, encode_partial,
                             partial_encodable)
from ._lowlevel import grow, stored_as_given, write_chunk, write_rows

__all__ = ["RAGGED_SLICE_BYTES", "ragged_slices", "Scratch", "Stream", "Stack", "ColumnStream"]

Array = np.ndarray[Any, Any]
#: A block's mark: (the owner's number for it, ``time.monotonic()`` when it came).
Mark = tuple[int, float]
NO_MARK: Mark = (0, 0.0)
#: Most bytes of variable-length points padded in memory at once (one longer point
#: is padded on its own).
RAGGED_SLICE_BYTES = 64 * MIB


def ragged_slices(lengths: Sequence[int], itemsize: int, limit: int
                  ) -> list[tuple[int, int]]:
    """Consecutive row ranges ``[start, stop)`` covering ``lengths`` such that each
    range padded to its longest point takes at most ``limit`` bytes; a point larger
    than ``limit`` gets a range of its own."""
    slices = []
    start, longest = 0, 0
    for i, length in enumerate(lengths):
        wider = max(longest, length)
        if i > start and (i + 1 - start) * wider * itemsize > limit:
            slices.append((start, i))
            start, wider = i, length
        longest = wider
    if start < len(lengths):
        slices.append((start, len(lengths)))
    return slices


class Scratch:
    """One reusable buffer, in which the pieces of a chunk are put together before it
    is written: the same memory each time, rather than a new array per chunk."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def rows(self, n: int, like: Array) -> Array:
        """An uninitialised array of ``n`` points shaped and typed like ``like``'s."""
        size = n * math.prod(like.shape[1:])
        if len(self.buffer) < size * like.itemsize:
            self.buffer = bytearray(size * like.itemsize)
        return np.frombuffer(self.buffer, dtype=like.dtype, count=size
                             ).reshape((n,) + like.shape[1:])


class Stream:
    """The buffer of one channel's dataset; writes whole chunks, the rest on flush.

    A whole chunk held in one received block is written from that block; one spread
    over several blocks is put together in the file's scratch buffer. Whole chunks of
    a dataset stored as given (see :func:`~._lowlevel.stored_as_given`) go straight
    to the file.

    With a ``codec`` (a compressed dataset whose filters it encodes exactly) and the
    file's ``compressor``, whole chunks are compressed on the compressor's threads
    and written straight to the file. A flush writes the held first points of a new
    chunk as a whole chunk (padded) and keeps them: the chunk is written again when
    more points come, whole when it fills up. Writes that HDF5 must filter itself
    (a chunk begun by another writer, points that come out of order) wait for the
    compressed chunks submitted before them.
    """

    codec: ChunkCodec | None = None
    compressor: ChunkCompressor | None = None
    #: the end of the held points a flush wrote as a partial chunk (compressed streams)
    _partial_end = -1
    #: what the flushes compressed of the chunk begun at ``_partial_at`` (deflate)
    _partial = PartialChunk()
    _partial_at = -1
    #: the mark of the first point a flush did not write (None: it wrote them all)
    unflushed: Mark | None = None
    #: points received, and when and how many at the last flush (the rate they come)
    _received = 0
    _last_flush: tuple[float, int] | None = None

    def __init__(self, dataset: h5py.Dataset, plan: StreamPlan,
                 lengths: h5py.Dataset | None, scratch: Scratch,
                 known: tuple[int, np.dtype[Any], bool] | None = None,
                 codec: ChunkCodec | None = None,
                 compressor: ChunkCompressor | None = None) -> None:
        """``known``: the dataset's length, dtype and whether it is stored as given,
        when the caller knows them (asking HDF5 costs more than the rest)."""
        if codec is not None and compressor is not None and lengths is None:
            self.codec, self.compressor = codec, compressor
        self.dataset = dataset
        self.plan = plan
        self.lengths = lengths
        self.rows = plan.chunk_rows
        self.pending: collections.deque[Array] = collections.deque()
        self.marks: collections.deque[Mark] = collections.deque()  # one per pending
        self.scratch = scratch
        self.start = 0
        self.count = 0
        if known is None:
            known = (int(dataset.shape[0]), dataset.dtype,
                     lengths is None and stored_as_given(dataset))
            self.tail = tuple(dataset.shape[1:])
        else:
            self.tail = tuple(plan.point_shape)
        self.written, self.dtype, self.direct = known
        # chunks the points accepted so far need, and chunks HDF5 holds in the file:
        # the difference is disk space promised but not taken yet (see chunk_claim)
        self.claimed = self.allocated = -(-self.written // self.rows)

    # -- disk space (whole chunks: a flush writes a partial chunk padded) -------------

    @property
    def _by_chunks(self) -> bool:
        """Whether its disk space is counted by whole chunks: not for variable-length
        points (padded to the widest) nor columns of a shared stack."""
        return self.lengths is None and type(self) is Stream

    def chunk_claim(self, first: int, count: int) -> int | None:
        """Bytes of the chunks that points ``[first, first + count)`` would add to the
        file beyond those claimed before (None: this stream is not counted by chunks,
        its points' own bytes are)."""
        if not self._by_chunks:
            return None
        last = (first + count - 1) // self.rows + 1
        return max(0, last - self.claimed) * self.chunk_bytes

    def commit_claim(self, first: int, count: int) -> None:
        if self._by_chunks:
            self.claimed = max(self.claimed, (first + count - 1) // self.rows + 1)

    @property
    def chunk_bytes(self) -> int:
        """Bytes of a whole chunk in the file: compressed, at most its bytes and the
        compressors' worst-case overhead (zlib, LZ4 and zstd add well under 1/64)."""
        values = 1
        for dim in self.tail:
            values *= dim
        nbytes = self.rows * values * self.dtype.itemsize
        if self.codec is not None:
            nbytes += nbytes // 64 + 64
        return nbytes

    def unallocated_bytes(self) -> int:
        """Disk space claimed for the points held, not yet taken in the file."""
        if not self._by_chunks:
            return 0
        return max(0, self.claimed - self.allocated) * self.chunk_bytes

    def add(self, first: int, data: Any, mark: Mark = NO_MARK) -> None:
        """Points ``[first, first + len(data))``, received with ``mark``."""
        self._received += len(data)
        if self.lengths is not None:
            self._write_ragged(first, data)
            return
        if self.count and first != self.start + self.count:
            self._write_until(self.start + self.count)
        if not self.count:
            self.start = first
        self.pending.append(data)
        self.marks.append(mark)
        self.count += len(data)
        end = self.start + self.count
        boundary = (end // self.rows) * self.rows
        if boundary > self.start and self.count >= self.rows:
            self._write_until(boundary)

    def _write_until(self, stop: int) -> None:
        """Write the held points up to ``stop``, one chunk (or part of one) per write."""
        while self.start < stop:
            end = min(stop, (self.start // self.rows + 1) * self.rows)
            self._write(self.start, self._take(end - self.start))
            self.start = end

    def _take(self, n: int) -> Array:
        """The first ``n`` held points, no longer held: a view of the first block when
        it has them all, else copied into the scratch buffer (valid until its next use)."""
        pending = self.pending
        self.count -= n
        head = pending[0]
        if len(head) >= n:
            if len(head) == n:
                pending.popleft()
                self.marks.popleft()
            else:
                pending[0] = head[n:]
            return head[:n]
        block = self._chunk_buffer(n, head)
        filled = 0
        while filled < n:
            head = pending[0]
            k = min(len(head), n - filled)
            block[filled:filled + k] = head[:k]
            filled += k
            if k == len(head):
                pending.popleft()
                self.marks.popleft()
            else:
                pending[0] = head[k:]
        return block

    def _chunk_buffer(self, n: int, like: Array) -> Array:
        """Room for ``n`` points: the scratch buffer, or for a compressed stream a new
        array (its chunks are read by the compressor's threads later)."""
        if self.codec is None:
            return self.scratch.rows(n, like)
        return np.empty((n,) + like.shape[1:], dtype=like.dtype)

    def _write(self, first: int, block: Array) -> None:
        stop = first + len(block)
        if self.lengths is not None:  # padded points, as wide as the widest so far
            if stop > self.written:  # the dataset's length (h5py's shape is slow to ask)
                self.dataset.resize(stop, axis=0)
            # the columns past the block's width are the fill value
            if block.shape[1]:
                self.dataset[first:stop, :block.shape[1]] = block
            self.written = max(self.written, stop)
            return
        dsid = self.dataset.id
        self.allocated = max(self.allocated, -(-stop // self.rows))
        fresh = first >= self.written  # nothing in the file at or after first
        covers = stop >= self.written  # every row of its chunk the file has, or more
        if stop > self.written:
            grow(dsid, (stop,) + self.tail)
            self.written = stop
        codec = self.codec
        if block.dtype != self.dtype or not block.flags.c_contiguous:
            self._settle()
            self.dataset[first:stop] = block  # h5py converts
        elif codec is not None and not first % self.rows and (
                len(block) == self.rows or covers):
            # a whole chunk, or the first rows of the last one (padded: the padding
            # lies past the dataset's end until the next points replace it)
            chunk = block if len(block) == self.rows else self._padded(block)
            write = functools.partial(write_chunk, dsid, (first,) + (0,) * len(self.tail))
            assert self.compressor is not None
            if first == self._partial_at and len(block) == self.rows:
                before, self._partial, self._partial_at = self._partial, PartialChunk(), -1
                if 0 < before.points < self.rows and before.pieces < MAX_PIECES \
                        and partial_encodable(codec):
                    # whole at last: the points the flushes compressed are not again
                    self.compressor.call(encode_partial, (codec, chunk, self.rows, before),
                                         lambda encoded: write(encoded.encoded),
                                         int(chunk.nbytes))
                    return
            self.compressor.submit(codec, chunk, write)
        elif self.direct and not first % self.rows and (len(block) == self.rows or fresh):
            # a whole chunk, stored as it is: straight to the file. The first part of
            # a new chunk (a flush) too, padded: HDF5 would write it whole anyway,
            # padded with the fill value, after more work; the padding lies past the
            # dataset's end, where no reader sees it, until the next points replace it
            if len(block) < self.rows:
                block = self._padded(block)
            write_chunk(dsid, (first,) + (0,) * len(self.tail), block)
        else:  # what dataset[first:stop] = block does, without its checks
            self._settle()
            write_rows(dsid, (first,) + (0,) * len(self.tail), block)

    def _settle(self) -> None:
        """Write the compressed chunks submitted so far: HDF5 is about to filter a
        chunk itself, and must read the last one written."""
        if self.compressor is not None:
            self.compressor.drain(wait=True)

    def _padded(self, block: Array) -> Array:
        """``block`` (the first rows of a chunk) followed by zeros up to a whole
        chunk, in the scratch buffer (``block`` may already be there, at its start;
        a compressed stream's in a new array)."""
        chunk = self._chunk_buffer(self.rows, block)
        n = len(block)
        if block.__array_interface__["data"][0] != chunk.__array_interface__["data"][0]:
            chunk[:n] = block  # (numpy copies overlapping memory safely)
        chunk[n:] = 0
        return chunk

    def _write_ragged(self, first: int, points: Sequence[Array]) -> None:
        """Pad points to a common width in slices of rows, each padded slice under
        RAGGED_SLICE_BYTES: one long point does not pad the whole block in memory.
        Cells past a slice's width keep the dataset's fill value (the padding)."""
        lengths = [len(p) for p in points]
        width = max(lengths + [self.dataset.shape[1]])
        if width > self.dataset.shape[1]:
            self.dataset.resize(width, axis=1)
        itemsize = self.dataset.dtype.itemsize
        for start, stop in ragged_slices(lengths, itemsize, RAGGED_SLICE_BYTES):
            block = np.full((stop - start, max(lengths[start:stop])), self.plan.fill,
                            dtype=self.dataset.dtype)
            for i in range(start, stop):
                block[i - start, :lengths[i]] = points[i]
            self._write(first + start, block)
            del block
        assert self.lengths is not None
        stop = first + len(points)
        if stop > self.lengths.shape[0]:
            self.lengths.resize(stop, axis=0)
        self.lengths[first:stop] = lengths

    def flush(self, final: bool = False, period: float | None = None,
              now: float = 0.0) -> None:
        """Write the held points; a compressed stream keeps the first points of a new
        chunk (written whole, padded, compressed: with deflate, only the points
        added since the last flush are encoded, see :mod:`.partial_chunks`) until
        the chunk is written whole again. ``final`` (the file is about to close):
        the chunk begun is compressed at once, as a whole chunk is.

        ``period``: seconds to the next flush (None: no next one to count on), ``now``
        ``time.monotonic()``. A compressed stream's chunk begun is then left as it is
        when, at the rate points came since the last flush, it fills up before the
        next flush (written whole then, it is not compressed in pieces), unless its
        first point not in the file came ``period`` or more ago: no point waits more
        than two periods. :attr:`unflushed` is then the mark of that point.

        (Storing such a chunk uncompressed until it fills up, its filter mask telling
        readers so, would spare compressing it at each flush; HDF5 2.0 then misreads
        it in the writing process until the file is opened again.)"""
        self.unflushed = None
        last, self._last_flush = self._last_flush, (now, self._received)
        if not self.count:
            return
        if (self.codec is not None and not final and not self.start % self.rows
                and self.count < self.rows):
            end = self.start + self.count
            if end == self._partial_end:  # written so at the last flush
                return
            if period is not None and last is not None and now > last[0]:
                rate = (self._received - last[1]) / (now - last[0])
                mark = self._mark_of(max(self.start, self._partial_end))
                if rate * period >= self.rows - self.count and now - mark[1] < period:
                    self.unflushed = mark
                    return
            self._write_partial(self._held())
            self._partial_end = end
            return
        self._write_until(self.start + self.count)

    def _mark_of(self, index: int) -> Mark:
        """The mark of the held block holding point ``index``."""
        first = self.start
        for block, mark in zip(self.pending, self.marks):
            first += len(block)
            if index < first:
                return mark
        return self.marks[-1]

    def _write_partial(self, held: Array) -> None:
        """Write the first points of the chunk begun, ``held``, as a whole chunk: with
        deflate, the points the last flush compressed are not compressed again (see
        :mod:`.partial_chunks`); else as :meth:`_write` does."""
        first, stop = self.start, self.start + len(held)
        codec = self.codec
        assert codec is not None and self.compressor is not None
        if not (partial_encodable(codec) and stop >= self.written
                and held.dtype == self.dtype and held.flags.c_contiguous
                and self.rows * held[:1].nbytes >= MIN_CHUNK_BYTES):
            self._write(first, held)
            return
        dsid = self.dataset.id
        self.allocated = max(self.allocated, -(-stop // self.rows))
        if stop > self.written:
            grow(dsid, (stop,) + self.tail)
            self.written = stop
        before = self._partial
        if self._partial_at != first or before.points > len(held):
            before = PartialChunk()  # another chunk, or its points given again
        write = functools.partial(write_chunk, dsid, (first,) + (0,) * len(self.tail))

        def store(encoded: PartialChunk) -> None:
            write(encoded.encoded)
            # its pieces are kept for the next flush, not the stream they make
            self._partial, self._partial_at = dataclasses.replace(encoded, encoded=b""), first

        self.compressor.call(encode_partial, (codec, held, self.rows, before), store,
                             int(held.nbytes))

    def _held(self) -> Array:
        """Every held point, in one new array; they stay held."""
        pending = self.pending
        if len(pending) == 1:
            return pending[0]
        return np.concatenate(list(pending))


class Stack:
    """A dataset shared by several channels, one column each (``stack_mcas``).

    ``counts[i]`` is the number of points of column ``i`` in the file; it is saved in
    the dataset's ``detector_points`` attribute after the data, so a resumed writer
    knows what each column holds (the dataset's length is that of the longest one).
    """

    def __init__(self, dataset: h5py.Dataset, plan: StackPlan) -> None:
        self.dataset = dataset
        self.plan = plan
        self.rows = int(dataset.shape[0])
        self.counts = np.zeros(len(plan.channels), dtype=np.int64)
        saved = dataset.attrs.get("detector_points")
        if saved is not None and len(saved) == len(self.counts):
            self.counts[:] = saved

    def write(self, column: int, first: int, block: Array) -> None:
        stop = first + len(block)
        if stop > self.rows:
            self.dataset.resize(stop, axis=0)
            self.rows = stop
        self.dataset[first:stop, column] = block
        if stop > self.counts[column]:
            self.counts[column] = stop
            self.dataset.attrs["detector_points"] = self.counts


class ColumnStream(Stream):
    """The buffer of one channel written into its column of a :class:`Stack`."""

    def __init__(self, stack: Stack, column: int, scratch: Scratch) -> None:
        self.stack = stack
        self.column = column
        self.dataset = stack.dataset
        self.lengths = None
        self.rows = stack.plan.chunk_rows
        self.pending = collections.deque()
        self.marks = collections.deque()
        self.scratch = scratch
        self.start = 0
        self.count = 0
        self.written = int(stack.counts[column])
        self.dtype = stack.dataset.dtype
        self.direct = False
        self.tail = tuple(stack.plan.point_shape)

    def _write(self, first: int, block: Array) -> None:
        self.stack.write(self.column, first, block)
        self.written = max(self.written, first + len(block))
