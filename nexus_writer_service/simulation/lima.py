"""Saving the frames of a simulated 2D detector the way Lima does, in HDF5 or EDF files.

Frame ``i`` goes to file ``spec.filename(spec.file_number(i))`` at index
``spec.index_in_file(i)`` (a scan of several acquisitions starts a new file with
each, see :class:`~.plan.LimaSpec`): of the dataset ``spec.path_in_file`` (a hard link to
``spec.detector_path``, as in Lima files) in HDF5 files; as the
``index_in_file + 1``-th frame (header and raw little-endian data, see
:mod:`nexus_writer_service.io.edf`) of EDF files. That is exactly where the
reader's ``LimaNode.image_reference(i)`` points. Each :meth:`LimaFileWriter.save` opens,
extends and closes the files it touches, so when the publisher then announces
``last_image_saved`` every frame up to it is in a closed, consistent file.
The first frame of a file recreates it, so stale files of an earlier run never
leak into a new scan.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np

from ..io.edf import edf_header
from .plan import LimaSpec

__all__ = ["LimaFileWriter", "write_edf_frames"]


class LimaFileWriter:
    """Writes the frames of one :class:`~.plan.LimaSpec`; not thread-safe (one per scan)."""

    def __init__(self, spec: LimaSpec):
        self.spec = spec
        self.saved = 0

    @property
    def last_image_saved(self) -> int:
        """Index of the last frame saved, -1 before the first."""
        return self.saved - 1

    def save(self, first: int, frames: np.ndarray[Any, Any]) -> None:
        """Save ``frames`` (``(n, height, width)``) as frames ``first, first + 1, ...``.

        Frames must come in order without gaps: ``first`` is the number saved so far.
        """
        if first != self.saved:
            raise ValueError(
                f"lima {self.spec.name!r}: frames must be saved in order; got frame {first}, "
                f"expected {self.saved}"
            )
        frames = np.asarray(frames, dtype=self.spec.dtype)
        if frames.shape[1:] != tuple(self.spec.shape):
            raise ValueError(
                f"lima {self.spec.name!r}: frames of shape {frames.shape[1:]} do not match "
                f"the declared {tuple(self.spec.shape)}"
            )
        done = 0
        while done < len(frames):
            frame = first + done
            chunk = frames[done:done + self.spec.frames_left_in_file(frame)]
            self._write(frame, chunk)
            done += len(chunk)
        self.saved += len(frames)

    def _write(self, frame: int, frames: np.ndarray[Any, Any]) -> None:
        spec = self.spec
        filename = spec.filename(spec.file_number(frame))
        index = spec.index_in_file(frame)
        os.makedirs(os.path.dirname(filename) or ".", exist_ok=True)
        if spec.file_format == "edf":
            write_edf_frames(filename, index, frames)
            return
        with h5py.File(filename, "w" if index == 0 else "a") as h5:
            if index == 0:
                dataset = self._create(h5)
            else:
                dataset = h5[spec.detector_path]
            dataset.resize(index + len(frames), axis=0)
            dataset[index:index + len(frames)] = frames

    def _create(self, h5: h5py.File) -> h5py.Dataset:
        spec = self.spec
        entry = spec.detector_path.strip("/").split("/")[0]
        h5.attrs["NX_class"] = "NXroot"
        h5.attrs["creator"] = "nexus_writer_service.simulation (Lima-style)"
        h5.require_group(entry).attrs["NX_class"] = "NXentry"
        detector = h5.require_group(os.path.dirname(spec.detector_path))
        detector.attrs["NX_class"] = "NXdetector"
        detector.parent.attrs["NX_class"] = "NXinstrument"
        height, width = spec.shape
        dataset = detector.create_dataset(
            os.path.basename(spec.detector_path), shape=(0, height, width),
            maxshape=(spec.frames_per_file, height, width), chunks=(1, height, width),
            dtype=spec.dtype,
        )
        dataset.attrs["interpretation"] = "image"
        if spec.path_in_file != spec.detector_path:
            group = h5.require_group(os.path.dirname(spec.path_in_file))
            group.attrs["NX_class"] = "NXcollection"
            group[os.path.basename(spec.path_in_file)] = dataset
        return dataset


def write_edf_frames(filename: str, index: int, frames: np.ndarray[Any, Any]) -> None:
    """Append ``frames`` to the EDF file ``filename`` as its frames ``index, index + 1,
    ...`` (0-based; the header's ``Image`` is 1-based); ``index`` 0 recreates the file."""
    with open(filename, "wb" if index == 0 else "ab") as file:
        for offset, frame in enumerate(frames):
            data = np.ascontiguousarray(frame, dtype=frame.dtype.newbyteorder("<"))
            file.write(edf_header(index + offset + 1, data))
            file.write(data.tobytes())
