"""Reading the files a lima detector saved, to link (EDF) or copy its frames.

Ownership: one :class:`LimaFrameFiles` per :class:`~.nexus.NexusFile`, used by the
thread that owns that file; not thread-safe. It keeps the parsed headers of the
EDF files it has seen, so a refresh parses only what was appended since the last.

Frames are read while the detector still writes, so "not there yet" is normal
during a scan: the readers return the frames they could read and a *problem*
(a sentence naming the file and what is wrong) for the first one they could not,
and the caller decides whether that is final.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import h5py
import numpy as np

from ..errors import NexusWriterError
from .edf import EdfFileIndex, EdfFormatError, EdfFrame, read_edf_data
from .layout import ImagesPlan

__all__ = [
    "MAX_EXTERNAL_SEGMENTS",
    "LimaFileError",
    "NotLinkableError",
    "LimaFrameFiles",
    "Segment",
    "frame_runs",
    "unplot_references",
]

Array = np.ndarray[Any, Any]
#: ``(absolute file name, byte offset, byte count)`` of one frame in an EDF file.
Segment = tuple[str, int, int]
#: The most frames one HDF5 external-storage dataset can list (its list of files
#: must fit in a 64 KiB object header message).
MAX_EXTERNAL_SEGMENTS = 2700


class LimaFileError(NexusWriterError, OSError):
    """A frame the scan file must link or copy cannot be read from the detector's file."""


class NotLinkableError(NexusWriterError, ValueError):
    """Frames that can be read but not linked as external storage (compressed EDF,
    another dtype, byte order or shape, too many frames)."""


def frame_runs(source: Any, start: int, stop: int) -> Iterator[tuple[str, str | None, int, int]]:
    """``(filename, path_in_file, first index in file, count)`` of the consecutive
    frames ``[start, stop)`` of ``source`` (an ``ImageSource``) that lie in one file."""
    frame = start
    while frame < stop:
        filename, path, index = source(frame)
        count = 1
        while frame + count < stop:
            nxt = source(frame + count)
            if nxt[0] != filename or nxt[2] != index + count:
                break
            count += 1
        yield filename, path, index, count
        frame += count


def _describe(dtype: np.dtype[Any], shape: tuple[int, ...]) -> str:
    return f"{dtype} {'x'.join(str(d) for d in shape)}"


class LimaFrameFiles:
    """Locates and reads the frames of lima detectors' files (see the module doc).

    ``storage`` records, per lima detector, the storage used instead of the planned
    one once its frames turned out not to be linkable.
    """

    def __init__(self) -> None:
        self._edf: dict[str, EdfFileIndex] = {}
        self.storage: dict[str, str] = {}

    def _edf_frames(self, filename: str, index: int, count: int
                    ) -> tuple[list[EdfFrame], str | None]:
        """The frames ``[index, index + count)`` of an EDF file that are complete, and
        why the next one is not (``None`` when all are)."""
        edf = self._edf.get(filename)
        if edf is None:
            edf = self._edf[filename] = EdfFileIndex(filename)
        try:
            frames = edf.update()
        except OSError as exc:
            return [], f"{filename}: cannot be read ({exc.strerror or exc})"
        wanted = frames[index:index + count]
        if len(wanted) == count:
            return wanted, None
        missing = index + len(wanted)
        problem = edf.problem or (f"{filename}: holds {len(frames)} frames, not frame "
                                  f"{missing + 1} of the file")
        return wanted, problem

    def edf_segments(self, filename: str, index: int, count: int, dtype: np.dtype[Any],
                     shape: tuple[int, ...]) -> tuple[list[Segment], str | None]:
        """External-storage segments of frames ``[index, index + count)`` of an EDF
        file, for those that are there, and why the next one is not.

        :raises NotLinkableError: a frame is compressed or not of ``dtype`` and ``shape``
        """
        frames, problem = self._edf_frames(filename, index, count)
        path = os.path.abspath(filename)
        for frame in frames:
            if frame.compression is not None:
                raise NotLinkableError(
                    f"{filename}: image {frame.image} is compressed ({frame.compression})")
            if frame.dtype != dtype or frame.shape != shape:
                raise NotLinkableError(
                    f"{filename}: image {frame.image} is {_describe(frame.dtype, frame.shape)}"
                    f", the detector declared {_describe(dtype, shape)}")
        return [(path, frame.offset, frame.nbytes) for frame in frames], problem

    def read_frames(self, filename: str, path: str | None, index: int, count: int,
                    dtype: np.dtype[Any], shape: tuple[int, ...]) -> tuple[Array, str | None]:
        """Frames ``[index, index + count)`` of a file (HDF5 dataset ``path``, or EDF
        when ``path`` is ``None``) that can be read, as ``dtype``, and why the next
        one cannot (``None`` when all can)."""
        if path is None:
            return self._read_edf(filename, index, count, dtype, shape)
        return _read_hdf5(filename, path, index, count, dtype, shape)

    def rebuild_external(self, h5: h5py.File, plan: ImagesPlan, nframes: int, source: Any,
                         final: bool) -> int:
        """Replace the dataset of ``plan`` by an external-storage dataset over the EDF
        frames ``[0, n)``, ``n <= nframes`` the frames there; returns ``n``.

        :raises NotLinkableError: a frame is there but cannot be linked
        :raises LimaFileError: ``final`` and a frame is missing or unreadable
        """
        if nframes > MAX_EXTERNAL_SEGMENTS:
            raise NotLinkableError(
                f"{nframes} frames: an external-storage dataset lists at most "
                f"{MAX_EXTERNAL_SEGMENTS}")
        dtype, shape = np.dtype(plan.dtype), tuple(plan.frame_shape)
        segments: list[Segment] = []
        problem = None
        for filename, _, index, count in frame_runs(source, 0, nframes):
            found, problem = self.edf_segments(filename, index, count, dtype, shape)
            segments += found
            if problem:
                break
        if problem and final:
            raise LimaFileError(_final_problem(plan, problem))
        existing = h5.get(plan.path)
        if (isinstance(existing, h5py.Dataset) and existing.shape == (len(segments),) + shape
                and (existing.external or not segments)):
            return len(segments)
        if existing is not None:
            del h5[plan.path]
        dataset = h5.create_dataset(plan.path, shape=(len(segments),) + shape, dtype=dtype,
                                    external=segments or None)
        for key, value in plan.attrs.items():
            dataset.attrs[key] = value
        dataset.attrs["frames"] = len(segments)
        return len(segments)

    def append_copies(self, dataset: h5py.Dataset, plan: ImagesPlan, start: int,
                      nframes: int, source: Any, final: bool) -> int:
        """Copy frames ``[start, n)`` into ``dataset`` (extended as needed), ``n <=
        nframes`` the frames that could be read; returns ``n``.

        :raises LimaFileError: ``final`` and a frame is missing or unreadable
        """
        dtype, shape = np.dtype(plan.dtype), tuple(plan.frame_shape)
        frame = start
        problem = None
        for filename, path, index, count in frame_runs(source, start, nframes):
            data, problem = self.read_frames(filename, path, index, count, dtype, shape)
            if len(data):
                stop = frame + len(data)
                if stop > dataset.shape[0]:
                    dataset.resize(stop, axis=0)
                dataset[frame:stop] = data
                frame = stop
            if problem:
                break
        if problem and final:
            raise LimaFileError(_final_problem(plan, problem))
        return frame

    def _read_edf(self, filename: str, index: int, count: int, dtype: np.dtype[Any],
                  shape: tuple[int, ...]) -> tuple[Array, str | None]:
        frames, problem = self._edf_frames(filename, index, count)
        data: list[Array] = []
        for frame in frames:
            same_type = (frame.dtype.kind, frame.dtype.itemsize) == (dtype.kind, dtype.itemsize)
            if not same_type or frame.shape != shape:
                problem = (f"{filename}: image {frame.image} is "
                           f"{_describe(frame.dtype, frame.shape)}, the detector declared "
                           f"{_describe(dtype, shape)}")
                break
            try:
                data.append(read_edf_data(filename, frame).astype(dtype, copy=False))
            except EdfFormatError as exc:
                problem = str(exc)
                break
            except OSError as exc:
                problem = f"{filename}: cannot be read ({exc.strerror or exc})"
                break
        array = np.stack(data) if data else np.empty((0,) + shape, dtype=dtype)
        return array, problem


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def unplot_references(h5: h5py.File, path: str) -> None:
    """Take the frame references at ``path`` out of the NXdata groups of their entry
    (frames that were to be linked fell back to references, which cannot be plotted):
    an auxiliary signal is dropped; the signal gives way to the first auxiliary one,
    or, alone, keeps the group valid as a 1D signal."""
    entry = h5[path.split("/")[1]]
    for group in entry.values():
        if not isinstance(group, h5py.Group) or _text(group.attrs.get("NX_class")) != "NXdata":
            continue
        names = [name for name in group
                 if isinstance(link := group.get(name, getlink=True), h5py.SoftLink)
                 and link.path == path]
        if not names:
            continue
        signal = _text(group.attrs.get("signal", ""))
        others = [_text(n) for n in group.attrs.get("auxiliary_signals", [])
                  if _text(n) not in names]
        if signal in names and not others:
            group.attrs["axes"] = ["."]
            group.attrs.pop("interpretation", None)
            continue
        for name in names:
            del group[name]
        if signal in names:
            group.attrs["signal"] = others.pop(0)
        if others:
            group.attrs["auxiliary_signals"] = others
        else:
            group.attrs.pop("auxiliary_signals", None)


def _final_problem(plan: ImagesPlan, problem: str) -> str:
    return (f"lima {plan.lima!r}: {problem}; the frames before it are in the scan file: "
            "check that the detector saved its files completely, uncompressed, with the "
            "dtype and shape it declared")


def _read_hdf5(filename: str, path: str, index: int, count: int, dtype: np.dtype[Any],
               shape: tuple[int, ...]) -> tuple[Array, str | None]:
    empty = np.empty((0,) + shape, dtype=dtype)
    try:
        with h5py.File(filename, "r", locking=False) as h5:
            dataset = h5.get(path)
            if not isinstance(dataset, h5py.Dataset):
                return empty, f"{filename}: no dataset {path}"
            if dataset.shape[1:] != shape or dataset.dtype != dtype:
                return empty, (f"{filename}: {path} holds "
                               f"{_describe(dataset.dtype, dataset.shape[1:])} frames, the "
                               f"detector declared {_describe(dtype, shape)}")
            available = max(0, min(count, dataset.shape[0] - index))
            data = dataset[index:index + available] if available else empty
    except OSError as exc:
        return empty, f"{filename}: cannot be read as HDF5 ({exc})"
    if available < count:
        return data, (f"{filename}: {path} holds {index + available} frames; frame "
                      f"{index + available} of the file (counted from 0) is not there")
    return data, None
