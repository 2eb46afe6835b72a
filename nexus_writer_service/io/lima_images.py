"""The frames of lima detectors in a scan file: the methods of
:class:`~.nexus.NexusFile` that create a detector's dataset and show the frames
saved so far, as a virtual dataset, external links to EDF files, copies or
references (the files lima saved are read by :mod:`.lima_files`).

Ownership: as :class:`~.nexus.NexusFile`'s (its worker thread).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import h5py
import numpy as np

from ._lowlevel import set_attrs as _set_attrs
from .codecs import filter_options
from .layout import ImagesPlan
from .lima_files import LimaFrameFiles, NotLinkableError, frame_runs, unplot_references

__all__ = ["LimaImages", "ImageSource", "FRAME_MAPPINGS_MAX"]

_STR = h5py.string_dtype()
#: (filename, path in file, index in file) of every saved frame, given its number.
ImageSource = Callable[[int], tuple[str, Optional[str], int]]
#: The most frames of a lima detector whose virtual dataset gets one mapping per frame
#: when its scan ends (about 0.1 s and 100 kB per 1000 frames); see _rebuild_virtual.
FRAME_MAPPINGS_MAX = 10_000


class LimaImages:
    """The lima methods of :class:`~.nexus.NexusFile`."""

    file: h5py.File
    path: str
    #: per lima detector: the frames the file shows
    _images: dict[str, int]

    def _create_placeholder(self, plan: ImagesPlan) -> None:
        self._images_dataset(plan, plan.storage)
        self._images[plan.lima] = 0

    def _images_dataset(self, plan: ImagesPlan, storage: str) -> h5py.Dataset:
        """The empty dataset of a lima detector's frames for ``storage``: copies grow
        along the first axis; virtual and external datasets are rebuilt as frames come."""
        shape = tuple(plan.frame_shape)
        if storage == "copy":
            dataset = self.file.create_dataset(
                plan.path, shape=(0,) + shape, maxshape=(None,) + shape,
                dtype=np.dtype(plan.dtype), chunks=(1,) + shape,
                **filter_options(plan.compression))
        elif storage in ("virtual", "external"):
            dataset = self.file.create_dataset(plan.path, shape=(0,) + shape,
                                               dtype=np.dtype(plan.dtype))
        else:
            dataset = self.file.create_dataset(plan.path, shape=(0,), maxshape=(None,),
                                               dtype=_STR, chunks=(256,))
            dataset.attrs["format"] = "<file relative to this one>::<path>[<index>]"
        _set_attrs(dataset, plan.attrs)
        return dataset

    def frames_shown(self, lima: str) -> int:
        return self._images.get(lima, 0)

    #: The lima files read to link (EDF) or copy frames; created on first use.
    _lima_files: LimaFrameFiles | None = None

    def show_images(self, plan: ImagesPlan, nframes: int, source: ImageSource,
                    final: bool = False) -> None:
        """Show frames ``[0, nframes)`` of a lima detector.

        Virtual and external datasets are rebuilt, references and copies extended.
        A frame to link or copy that cannot be read yet (file not written, truncated)
        is shown by a later call; frames that cannot be linked switch the detector to
        ``plan.fallback`` (the reason is in the dataset's ``not_linked`` attribute).
        ``final``: a virtual dataset of at most :data:`FRAME_MAPPINGS_MAX` frames is
        then mapped frame by frame (again if it already shows them all), so that
        nexusformat reads it right.

        :raises LimaFileError: ``final`` (the scan ended) and a frame to link or copy
            cannot be read; the message names the file and what is wrong
        """
        if self._lima_files is None:
            self._lima_files = LimaFrameFiles()
        files = self._lima_files
        storage = files.storage.get(plan.lima, plan.storage)
        shown = self._images.get(plan.lima, 0)
        if nframes < shown or nframes == shown and not (
                final and storage == "virtual" and self._frame_mapped.get(plan.lima) is False
                and nframes <= FRAME_MAPPINGS_MAX):
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        if storage == "external":
            try:
                nframes = files.rebuild_external(self.file, plan, nframes, source, final)
            except NotLinkableError as exc:
                files.storage[plan.lima] = plan.fallback
                del self.file[plan.path]
                self._images_dataset(plan, plan.fallback).attrs["not_linked"] = str(exc)
                if plan.fallback == "references":
                    unplot_references(self.file, plan.path)
                self._images[plan.lima] = 0
                self.show_images(plan, nframes, source, final)
                return
        elif storage == "copy":
            nframes = files.append_copies(self.file[plan.path], plan,
                                          self._images.get(plan.lima, 0), nframes, source,
                                          final)
        elif storage == "virtual":
            self._rebuild_virtual(plan, nframes, source, directory,
                                  final and nframes <= FRAME_MAPPINGS_MAX)
        else:
            dataset = self.file[plan.path]
            first = dataset.shape[0]
            dataset.resize(nframes, axis=0)
            uris = []
            for frame in range(first, nframes):
                filename, path, index = source(frame)
                rel = os.path.relpath(filename, directory)
                uris.append(f"{rel}::{path or ''}[{index}]")
            dataset[first:nframes] = np.array(uris, dtype=_STR)
        self._images[plan.lima] = nframes

    #: per lima detector: whether its virtual dataset maps each frame on its own
    _frame_mapped: dict[str, bool]

    def _rebuild_virtual(self, plan: ImagesPlan, nframes: int, source: ImageSource,
                         directory: str, per_frame: bool) -> None:
        """The virtual dataset of frames ``[0, nframes)``: one mapping per run of frames
        in one file while the scan runs (cheap to rebuild every refresh), and
        ``per_frame`` (when the scan ends) one mapping per frame.

        nexusformat (2.1 at least) takes a virtual dataset to have one frame per
        mapping: it shows ``(mappings,) + frame shape`` and fails to read the data
        otherwise. Frames mapped one by one are read right by every reader.

        HDF5 reads ``%`` in the source file and dataset names of a mapping as the start
        of a format (``%b``), so a literal one (a lima file template such as
        ``run%2_%04d.h5`` gives them) is written ``%%``.
        """
        shape = tuple(plan.frame_shape)
        layout = h5py.VirtualLayout(shape=(nframes,) + shape, dtype=np.dtype(plan.dtype))
        frame = 0
        for filename, path, index, count in frame_runs(source, 0, nframes):
            rel = os.path.relpath(filename, directory)
            vsource = h5py.VirtualSource(rel.replace("%", "%%"),
                                         (path or "/").replace("%", "%%"),
                                         shape=(index + count,) + shape)
            if per_frame:
                for k in range(count):
                    layout[frame + k] = vsource[index + k]
            else:
                layout[frame:frame + count] = vsource[index:index + count]
            frame += count
        del self.file[plan.path]
        dataset = self.file.create_virtual_dataset(plan.path, layout, fillvalue=0)
        _set_attrs(dataset, plan.attrs)
        dataset.attrs["frames"] = nframes
        self._frame_mapped[plan.lima] = per_frame
