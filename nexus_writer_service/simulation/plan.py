"""What a simulated scan will publish: its nodes, its scan_info and a source of points.

A :class:`ScanPlan` is pure data plus a :data:`PointSource`; it does no I/O. The
publishing loop (:mod:`.runner`) asks the source for consecutive blocks of points
and sends them. Sources draw random numbers as they go, so blocks must be asked
for in order, each exactly once: the same seed and the same block boundaries then
give bit-identical data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..data.events import EndReason

#: File formats a simulated lima detector saves (the suffix of ``.h5`` / ``.edf`` files).
LIMA_FILE_FORMATS = ("hdf5", "edf")

__all__ = [
    "LIMA_FILE_FORMATS",
    "ChannelSpec",
    "LimaSpec",
    "Block",
    "PointSource",
    "ScanParameters",
    "ScanPlan",
]


@dataclass(frozen=True)
class ChannelSpec:
    """A channel the scan declares: full BLISS-like name, dtype, per-point shape, unit.

    ``subscan`` is the top master (key of ``scan_info["acquisition_chain"]``) the
    channel belongs to. ``points_per_point`` says how many points of this channel
    each point of the scan produces (2 for a master twice as fast as the first).
    """

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...] = ()
    unit: str | None = None
    subscan: str | None = None
    points_per_point: int = 1

    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def short_name(self) -> str:
        return self.name.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class LimaSpec:
    """A 2D detector that saves its frames in HDF5 or EDF files, Lima style.

    File ``n`` is ``<directory>/<prefix><n:04d><suffix>``, or ``file_template % n``
    when a printf ``file_template`` is given (as blissdata names lima files; its
    one integer conversion is in the file name). It holds up to ``frames_per_file``
    frames, at ``path_in_file`` in HDF5 files, one after the other in EDF files
    (``file_format`` ``"edf"``). ``frames_per_acquisition`` > 0: the scan runs
    several acquisitions of that many frames, and each starts a new file, so the
    last file of an acquisition may hold fewer frames; each acquisition takes
    ``ceil(frames_per_acquisition / frames_per_file)`` file numbers, the first one
    being ``first_file_number``. This is the rule of blissdata's ``LimaClient``
    and of the reader's ``LimaNode.image_reference``.
    """

    name: str
    directory: str
    prefix: str
    shape: tuple[int, int]
    dtype: np.dtype[Any] = field(default_factory=lambda: np.dtype("uint16"))
    suffix: str = ".h5"
    frames_per_file: int = 10
    first_file_number: int = 0
    path_in_file: str = "/entry_0000/measurement/data"
    detector_path: str = "/entry_0000/instrument/detector/data"
    subscan: str | None = None
    file_format: str = "hdf5"
    frames_per_acquisition: int = 0
    file_template: str = ""

    def __post_init__(self) -> None:
        if self.file_format not in LIMA_FILE_FORMATS:
            raise ValueError(f"lima {self.name!r}: file_format {self.file_format!r} is not "
                             f"one of {', '.join(LIMA_FILE_FORMATS)}")
        for name, minimum in (("frames_per_file", 1), ("first_file_number", 0),
                              ("frames_per_acquisition", 0)):
            if getattr(self, name) < minimum:
                raise ValueError(f"lima {self.name!r}: {name} must be >= {minimum}, got "
                                 f"{getattr(self, name)!r}")
        if self.file_template:
            try:
                self.file_template % 0
            except (TypeError, ValueError) as exc:
                raise ValueError(f"lima {self.name!r}: file_template {self.file_template!r} "
                                 f"needs one integer conversion ({exc})") from None

    @property
    def files_per_acquisition(self) -> int:
        return -(-self.frames_per_acquisition // self.frames_per_file)

    def filename(self, file_number: int) -> str:
        if self.file_template:
            return self.file_template % file_number
        return os.path.join(self.directory, f"{self.prefix}{file_number:04d}{self.suffix}")

    def _place(self, frame: int) -> tuple[int, int, int]:
        """``(acquisition, file in the acquisition, index in the file)`` of ``frame``."""
        acquisition, in_acquisition = 0, frame
        if self.frames_per_acquisition:
            acquisition, in_acquisition = divmod(frame, self.frames_per_acquisition)
        return (acquisition,) + divmod(in_acquisition, self.frames_per_file)

    def file_number(self, frame: int) -> int:
        acquisition, file_in_acquisition, _ = self._place(frame)
        return (self.first_file_number + acquisition * self.files_per_acquisition
                + file_in_acquisition)

    def index_in_file(self, frame: int) -> int:
        return self._place(frame)[2]

    def frames_left_in_file(self, frame: int) -> int:
        """How many frames from ``frame`` on (itself included) go to its file."""
        left = self.frames_per_file - self.index_in_file(frame)
        if self.frames_per_acquisition:
            left = min(left, self.frames_per_acquisition - frame % self.frames_per_acquisition)
        return left

    def image_reference(self, frame: int) -> tuple[str, str | None, int]:
        """``(filename, path_in_file, index_in_file)`` of frame ``frame``; the path is
        ``None`` in EDF files, where the index is the frame's place in the file."""
        path = self.path_in_file if self.file_format == "hdf5" else None
        return (self.filename(self.file_number(frame)), path, self.index_in_file(frame))


@dataclass
class Block:
    """Points ``[start, stop)`` of a scan: channel data and lima frames by name.

    Each channel array's first axis is its points; a channel with
    ``points_per_point=k`` has ``k * (stop - start)`` of them.
    """

    start: int
    stop: int
    channels: dict[str, np.ndarray[Any, Any]]
    frames: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)


PointSource = Callable[[int, int], Block]
"""``source(start, stop)`` returns the :class:`Block` of points ``[start, stop)``."""


@dataclass(frozen=True)
class ScanParameters:
    """Everything a scan builder needs besides the random generator.

    ``npoints`` ``None`` means the scan type's default size. ``repeat`` numbers the
    repetitions of the same scan type in one run, so that each gets its own data.
    ``count_time`` is the pacing in seconds per point (0: as fast as possible); the
    integration time written in ``scan_info`` is ``exposure``. ``lima_format``: the
    file format of the simulated 2D detectors (one of :data:`LIMA_FILE_FORMATS`).
    """

    session: str
    number: int
    root: str
    seed: int = 0
    repeat: int = 0
    npoints: int | None = None
    count_time: float = 0.0
    nchannels: int = 128
    #: detectors of the mca scan's controller (channels ``mca1:<quantity>_det<n>``)
    mca_detectors: int = 1
    start_time: str = "2000-01-01T00:00:00+00:00"
    lima_format: str = "hdf5"
    #: frames per file of the simulated 2D detectors
    lima_frames_per_file: int = 10
    #: frames per acquisition of the simulated 2D detectors (0: one acquisition per
    #: scan), each acquisition starting a new file (see :class:`LimaSpec`)
    lima_frames_per_acquisition: int = 0
    #: the number of the first file of the simulated 2D detectors
    lima_first_file_number: int = 0
    #: give each scan BLISS's ``nexuswriter.masterfiles`` (a collection and a proposal file)
    master_files: bool = False

    @property
    def exposure(self) -> float:
        return self.count_time if self.count_time > 0 else 0.1


#: scan_info keys BLISS completes when a scan is prepared, and when it ends
INFO_AT_PREPARED = ("channels",)
INFO_AT_END = ("end_time", "end_reason")
#: keys of ``scan_info["positioners"]`` BLISS completes when a scan ends
POSITIONERS_AT_END = ("positioners_end", "positioners_dial_end")


@dataclass
class ScanPlan:
    """One scan ready to publish.

    ``npoints`` points of the scan are published (then the scan ends with
    ``end_reason`` and ``end_message``); ``scan_info["npoints"]`` may say more, as
    for a scan stopped early or one that fails. ``scan_info`` is the scan_info as it
    is once the scan is prepared; it is published in three steps, as BLISS does (see
    :meth:`info_at_creation`).
    """

    kind: str
    name: str
    number: int
    scan_info: dict[str, Any]
    channels: list[ChannelSpec]
    limas: list[LimaSpec]
    npoints: int
    source: PointSource
    end_reason: EndReason = EndReason.SUCCESS
    end_message: str = ""

    @property
    def filename(self) -> str:
        return str(self.scan_info.get("filename", ""))

    @property
    def subscans(self) -> list[str]:
        return list(self.scan_info.get("acquisition_chain") or {}) or ["main"]

    def info_at_creation(self) -> dict[str, Any]:
        """The scan_info as BLISS publishes it when the scan is created: without what
        it completes when the scan is prepared (:meth:`info_at_prepared`) and when it
        ends (:meth:`info_at_end`)."""
        info = {key: value for key, value in self.scan_info.items()
                if key not in INFO_AT_PREPARED + INFO_AT_END}
        positioners = info.get("positioners")
        if isinstance(positioners, dict):
            info["positioners"] = {key: value for key, value in positioners.items()
                                   if key not in POSITIONERS_AT_END}
        return info

    def info_at_prepared(self) -> dict[str, Any]:
        """What BLISS adds to the scan_info when the scan is prepared (``channels``)."""
        return {key: self.scan_info[key] for key in INFO_AT_PREPARED if key in self.scan_info}

    def info_at_end(self, reason: EndReason, end_time: str) -> dict[str, Any]:
        """What BLISS adds to the scan_info when the scan ends: the end positions, the
        end time and the end reason."""
        changes: dict[str, Any] = {"end_time": end_time, "end_reason": reason.value}
        positioners = self.scan_info.get("positioners")
        if isinstance(positioners, dict):
            end = {key: positioners[key] for key in POSITIONERS_AT_END if key in positioners}
            if end:
                changes["positioners"] = end
        return changes

    def blocks(self, points_per_block: int) -> Iterator[Block]:
        """The scan's points in consecutive blocks of at most ``points_per_block``."""
        if points_per_block < 1:
            raise ValueError(f"points_per_block must be >= 1, got {points_per_block}")
        for start in range(0, self.npoints, points_per_block):
            yield self.source(start, min(start + points_per_block, self.npoints))
