"""The ground-truth file: everything the simulator published, to check a consumer against.

Layout of the HDF5 file (one group per scan, in publication order)::

    /<scan id>_<scan type>            attrs: key, kind, name, number, session,
                                       npoints, end_reason, end_message, filename
        scan_info                     JSON text of the scan_info, as readers get it
                                       once the scan has ended
        channels/<channel name>       every point published, dtype as declared;
                                       attrs: subscan, unit, shape
        lima/<lima name>              attrs: saving parameters (file_format, dtype,
                                       shape...), last_image_acquired, last_image_saved
            filename, index_in_file   reference of every saved frame
            checksum                  CRC-32 of each frame's raw bytes (C order, the
                                       declared dtype), whatever the file format

Data are appended block by block as they are published, so a scan of millions of
points never has to fit in memory. :func:`read_truth` loads a file back.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from ..data import codec
from ..data.events import EndReason, merge_info
from .plan import Block, ChannelSpec, LimaSpec, ScanPlan

__all__ = ["TruthWriter", "ScanTruthWriter", "TruthScan", "TruthLima", "read_truth"]

Array = np.ndarray[Any, Any]
_CHUNK_BYTES = 1 << 20
_STR = h5py.string_dtype()


def _chunk_rows(point_bytes: int) -> int:
    return int(min(65536, max(1, _CHUNK_BYTES // max(1, point_bytes))))


def _appendable(group: h5py.Group, name: str, dtype: Any, shape: tuple[int, ...] = ()
                ) -> h5py.Dataset:
    point_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return group.create_dataset(name, shape=(0,) + shape, maxshape=(None,) + shape,
                                chunks=(_chunk_rows(point_bytes),) + shape, dtype=dtype)


def _append(dataset: h5py.Dataset, values: Any) -> None:
    n = dataset.shape[0]
    dataset.resize(n + len(values), axis=0)
    dataset[n:] = values


class ScanTruthWriter:
    """The truth of one scan; created by :meth:`TruthWriter.add_scan`. Not thread-safe."""

    def __init__(self, group: h5py.Group, plan: ScanPlan):
        self.group = group
        self._channels: dict[str, h5py.Dataset] = {}
        channels = group.create_group("channels", track_order=True)
        for spec in plan.channels:
            self._channels[spec.name] = self._channel(channels, spec)
        self._limas: dict[str, h5py.Group] = {}
        limas = group.create_group("lima", track_order=True)
        for lima in plan.limas:
            self._limas[lima.name] = self._lima(limas, lima)

    @staticmethod
    def _channel(parent: h5py.Group, spec: ChannelSpec) -> h5py.Dataset:
        dataset = _appendable(parent, spec.name, spec.dtype, spec.shape)
        dataset.attrs["subscan"] = spec.subscan or ""
        dataset.attrs["unit"] = spec.unit or ""
        dataset.attrs["shape"] = json.dumps(list(spec.shape))
        return dataset

    @staticmethod
    def _lima(parent: h5py.Group, spec: LimaSpec) -> h5py.Group:
        group = parent.create_group(spec.name)
        group.attrs.update({
            "directory": spec.directory, "prefix": spec.prefix, "suffix": spec.suffix,
            "file_format": spec.file_format, "frames_per_file": spec.frames_per_file,
            "first_file_number": spec.first_file_number, "path_in_file": spec.path_in_file,
            "frames_per_acquisition": spec.frames_per_acquisition,
            "file_template": spec.file_template,
            "dtype": np.dtype(spec.dtype).str, "shape": json.dumps(list(spec.shape)),
            "last_image_acquired": -1, "last_image_saved": -1,
        })
        _appendable(group, "filename", _STR)
        _appendable(group, "index_in_file", np.int64)
        _appendable(group, "checksum", np.uint32)
        return group

    def append(self, block: Block) -> None:
        """Record the channel data of one published block."""
        for name, values in block.channels.items():
            _append(self._channels[name], values)

    def add_frames(self, spec: LimaSpec, first: int, frames: Array) -> None:
        """Record the references and checksums of frames ``first, first + 1, ...``."""
        group = self._limas[spec.name]
        refs = [spec.image_reference(first + i) for i in range(len(frames))]
        _append(group["filename"], [ref[0] for ref in refs])
        _append(group["index_in_file"], np.array([ref[2] for ref in refs], dtype=np.int64))
        checksums = [zlib.crc32(np.ascontiguousarray(frame).tobytes()) for frame in frames]
        _append(group["checksum"], np.array(checksums, dtype=np.uint32))

    def lima_progress(self, name: str, last_image_acquired: int, last_image_saved: int) -> None:
        group = self._limas[name]
        group.attrs["last_image_acquired"] = int(last_image_acquired)
        group.attrs["last_image_saved"] = int(last_image_saved)

    def update_info(self, changes: dict[str, Any]) -> None:
        """Record an update of the scan_info (merged as readers merge it)."""
        dataset = self.group["scan_info"]
        info = merge_info(json.loads(_text(dataset[()])), codec.jsonable(changes))
        dataset[()] = json.dumps(info)

    def end(self, reason: EndReason, message: str, npoints: int) -> None:
        self.group.attrs.update({"end_reason": EndReason(reason).value,
                                 "end_message": message, "npoints": int(npoints)})
        self.group.file.flush()


class TruthWriter:
    """Writes a truth file (overwriting it); close it, or use it as a context manager."""

    def __init__(self, path: str | os.PathLike[str], session: str = ""):
        self.path = os.fspath(path)
        self._file: h5py.File | None = h5py.File(self.path, "w", track_order=True)
        self._file.attrs["creator"] = "nexus_writer_service.simulation"
        self._file.attrs["session"] = session

    def add_scan(self, plan: ScanPlan, key: str, session: str) -> ScanTruthWriter:
        """Start recording scan ``key`` (created in Redis from ``plan``)."""
        if self._file is None:
            raise ValueError(f"truth file {self.path} is closed")
        scan_id = key.rsplit(":", 1)[-1]
        group = self._file.create_group(f"{scan_id}_{plan.kind}", track_order=True)
        group.attrs.update({
            "key": key, "kind": plan.kind, "name": plan.name, "number": plan.number,
            "session": session, "filename": plan.filename, "npoints": 0,
            "end_reason": "", "end_message": "",
        })
        group.create_dataset("scan_info", data=json.dumps(codec.jsonable(plan.scan_info)),
                             dtype=_STR)
        return ScanTruthWriter(group, plan)

    def close(self) -> None:
        """Close the file; idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "TruthWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@dataclass
class TruthLima:
    """What was published about one lima detector, and where each saved frame is."""

    name: str
    info: dict[str, Any]
    last_image_acquired: int
    last_image_saved: int
    references: list[tuple[str, str | None, int]]
    checksums: Array


@dataclass
class TruthScan:
    """One scan of a truth file; ``channels`` hold every point published."""

    key: str
    kind: str
    name: str
    number: int
    session: str
    npoints: int
    end_reason: EndReason | None
    end_message: str
    scan_info: dict[str, Any]
    channels: dict[str, Array] = field(default_factory=dict)
    channel_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    limas: dict[str, TruthLima] = field(default_factory=dict)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_lima(group: h5py.Group) -> TruthLima:
    attrs = {key: (value.item() if isinstance(value, np.generic) else _text(value)
                   if isinstance(value, (bytes, str)) else value)
             for key, value in group.attrs.items()}
    path = str(attrs["path_in_file"]) if attrs.get("file_format", "hdf5") == "hdf5" else None
    filenames = [_text(f) for f in group["filename"][()]]
    indices = [int(i) for i in group["index_in_file"][()]]
    return TruthLima(
        name=group.name.rsplit("/", 1)[-1], info=attrs,
        last_image_acquired=int(attrs["last_image_acquired"]),
        last_image_saved=int(attrs["last_image_saved"]),
        references=[(f, path, i) for f, i in zip(filenames, indices)],
        checksums=group["checksum"][()],
    )


def read_truth(path: str | os.PathLike[str]) -> dict[str, TruthScan]:
    """Every scan of a truth file, by Redis scan key, in publication order."""
    scans: dict[str, TruthScan] = {}
    with h5py.File(os.fspath(path), "r") as h5:
        for group in h5.values():
            attrs = group.attrs
            reason = _text(attrs["end_reason"])
            scan = TruthScan(
                key=_text(attrs["key"]), kind=_text(attrs["kind"]), name=_text(attrs["name"]),
                number=int(attrs["number"]), session=_text(attrs["session"]),
                npoints=int(attrs["npoints"]),
                end_reason=EndReason(reason) if reason else None,
                end_message=_text(attrs["end_message"]),
                scan_info=json.loads(_text(group["scan_info"][()])),
            )
            for name, dataset in group["channels"].items():
                scan.channels[name] = dataset[()]
                scan.channel_info[name] = {
                    "subscan": _text(dataset.attrs["subscan"]),
                    "unit": _text(dataset.attrs["unit"]) or None,
                    "shape": tuple(json.loads(_text(dataset.attrs["shape"]))),
                }
            for name, lima in group["lima"].items():
                scan.limas[name] = _read_lima(lima)
            scans[scan.key] = scan
    return scans
