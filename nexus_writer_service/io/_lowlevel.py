"""h5py's low-level API, in one place: the writer's fast paths into HDF5.

Why it exists: h5py's high-level calls (``create_group``, ``create_dataset``,
``attrs[...] =``, ``group[name] = SoftLink(...)``, ``dataset.resize``,
``dataset[a:b] = block``) check, convert and build property lists on every call. A
scan writes millions of points into hundreds of datasets and creates thousands of
objects, so the writer goes through HDF5's own calls instead, here and nowhere else
in ``io``. Every function gives exactly what the high-level call would (same
objects, same property lists as h5py's defaults: UTF-8 link names where needed,
intermediate groups created, no time tracking, variable-length UTF-8 string
attributes); anything unusual (an attribute that is not a string, an existing name,
data h5py must convert) goes through the high-level API.

What it measured (side by side, same stream, same machine; the story is in the
commit log of ``io``):

* whole chunks of uncompressed streams written straight to the file (HDF5's direct
  chunk write) rather than through the chunk cache: HDF5 writes and flushes of the
  scenario 1 drain went from 0.25 s to 0.07-0.13 s CPU (blocks of 1000), the whole
  drain from 0.29-0.45 s to 0.18-0.23 s CPU, its peak RSS from 190-200 MiB to
  105-135 MiB;
* the first part of a new chunk (a flush) written the same way, padded to a whole
  chunk: flushing part of a chunk in each of 500 datasets took a median of 32 ms
  against 42 ms;
* datasets resized and written through ``set_extent`` and ``H5Dwrite``: 37 us
  instead of 81 us per resize and write; with a new dataset's length, type and
  layout known without asking HDF5, the scenario 2 drain went from 0.78-1.0 s to
  0.43-0.49 s CPU;
* one datatype and one dataspace shared by every new dataset of that type and shape
  (HDF5 copies them): building the 500-channel tree took a median of 93 ms against
  107 ms;
* streams of whole-point chunks opened without a chunk cache, so part of a chunk
  flushed for readers goes straight to its place: a drain that met a flush spent
  0.06-0.08 s less CPU and 6,000 fewer page faults.

Not thread-safe beyond what HDF5 is: called from the thread that owns the file.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
from typing import Any, Mapping, Optional

import h5py
import numpy as np
from h5py._objects import phil as _hdf5_lock

__all__ = [
    "collect_hdf5_garbage",
    "create_group",
    "create_stream_dataset",
    "file_descriptor",
    "filter_pipeline",
    "grow",
    "held_here",
    "limit_hdf5_free_lists",
    "open_uncached",
    "set_attrs",
    "soft_link",
    "stored_as_given",
    "write_chunk",
    "write_rows",
]

_STR = h5py.string_dtype()
_STR_FILE_TYPE = h5py.h5t.py_create(_STR, logical=True)
_STR_MEMORY_TYPE = h5py.h5t.py_create(_STR)
_SCALAR = h5py.h5s.create_simple(())


@functools.lru_cache(maxsize=2)
def _lcpl(utf8: bool) -> h5py.h5p.PropLCID:
    lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
    lcpl.set_create_intermediate_group(True)
    lcpl.set_char_encoding(h5py.h5t.CSET_UTF8 if utf8 else h5py.h5t.CSET_ASCII)
    return lcpl


def _name(path: str) -> tuple[bytes, h5py.h5p.PropLCID]:
    """A link name as HDF5 wants it, and the link creation list h5py would use."""
    try:
        return path.encode("ascii"), _lcpl(False)
    except UnicodeEncodeError:
        return path.encode("utf-8"), _lcpl(True)


def _attr_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, str) for v in value):
            return np.array(value, dtype=_STR)
        return np.asarray(value)
    if isinstance(value, Mapping):
        return json.dumps(value)
    return value


def set_attrs(obj: Any, attrs: Mapping[str, Any], new: bool = False) -> None:
    """Set ``attrs`` on a high-level object or an object id: a new string attribute
    in one call, anything else (lists, numbers, replacing) through ``obj.attrs``.
    ``new``: the object was just created (it has no attribute yet)."""
    oid = obj.id if isinstance(obj, h5py.HLObject) else obj
    high: h5py.AttributeManager | None = None
    for key, value in attrs.items():
        name = key.encode("utf-8")
        if isinstance(value, str) and (new or not h5py.h5a.exists(oid, name)):
            attr = h5py.h5a.create(oid, name, _STR_FILE_TYPE, _SCALAR)
            try:
                attr.write(np.array(value, dtype=_STR), mtype=_STR_MEMORY_TYPE)
            finally:
                attr.close()
            continue
        if high is None:
            if not isinstance(obj, h5py.HLObject):
                obj = h5py.Group(oid) if isinstance(oid, h5py.h5g.GroupID) else h5py.Dataset(oid)
            high = obj.attrs
        high[key] = _attr_value(value)


def create_group(file: h5py.File, path: str, attrs: Mapping[str, Any]) -> h5py.h5g.GroupID:
    """A new group at ``path`` (missing parents created) with ``attrs``; an existing
    one gets ``attrs`` set."""
    name, lcpl = _name(path)
    try:
        gid = h5py.h5g.create(file.id, name, lcpl=lcpl)
    except ValueError:  # it exists
        group = file.require_group(path)
        set_attrs(group, attrs)
        return group.id
    set_attrs(gid, attrs, new=True)
    return gid


@functools.lru_cache(maxsize=256)
def _dcpl(shape: tuple[int, ...], maxshape: tuple[int | None, ...], chunks: tuple[int, ...],
          dtype: np.dtype[Any], fill: Any, compression: tuple[tuple[str, Any], ...]
          ) -> h5py.h5p.PropDCID:
    options = dict(compression)
    dcpl = h5py.filters.fill_dcpl(
        h5py.h5p.create(h5py.h5p.DATASET_CREATE), shape, dtype, chunks,
        options.get("compression"), options.get("compression_opts"), options.get("shuffle"),
        None, maxshape, None, None, True)
    if fill is not None:
        dcpl.set_fill_value(np.array(fill, dtype=dtype))
    dcpl.set_obj_track_times(False)
    return dcpl


# HDF5 copies the datatype and dataspace into each dataset it creates: one of each
# serves every dataset of that type and shape
@functools.lru_cache(maxsize=64)
def _file_type(dtype: np.dtype[Any]) -> h5py.h5t.TypeID:
    return h5py.h5t.py_create(dtype, logical=True)


@functools.lru_cache(maxsize=256)
def _space(shape: tuple[int, ...], maxshape: tuple[int | None, ...]) -> h5py.h5s.SpaceID:
    return h5py.h5s.create_simple(
        shape, tuple(h5py.h5s.UNLIMITED if m is None else m for m in maxshape))


@functools.lru_cache(maxsize=1)
def _uncached() -> h5py.h5p.PropDAID:
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(1, 0, 1.0)
    return dapl


def create_stream_dataset(file: h5py.File, path: str, shape: tuple[int, ...],
                          maxshape: tuple[int | None, ...], chunks: tuple[int, ...],
                          dtype: Any, fill: Any = None,
                          compression: Mapping[str, Any] | None = None,
                          cached: bool = True) -> h5py.Dataset:
    """A new chunked, resizable dataset, equal to what ``file.create_dataset`` gives
    for the same arguments (``compression``: its compression keyword arguments).

    ``cached=False``: this handle has no chunk cache (see :func:`open_uncached`)."""
    dtype = np.dtype(dtype)
    key = tuple(sorted((k, _hashable(v)) for k, v in (compression or {}).items()))
    dcpl = _dcpl(tuple(shape), tuple(maxshape), tuple(chunks), dtype,
                 None if fill is None else _hashable(fill), key)
    name, lcpl = _name(path)
    dsid = h5py.h5d.create(file.id, name, _file_type(dtype),
                           _space(tuple(shape), tuple(maxshape)),
                           dcpl=dcpl, lcpl=lcpl, dapl=None if cached else _uncached())
    return h5py.Dataset(dsid)


def open_uncached(file: h5py.File, path: str) -> h5py.Dataset:
    """The dataset at ``path``, opened without a chunk cache.

    For chunks stored as they are (no filter, no fill value to write), HDF5 then
    writes part of a chunk straight to its place in the file, instead of holding a
    copy of the whole chunk in memory until it is evicted or the file is flushed
    (then written whole, again at each flush while it fills up): less memory, and
    less copied and written, for a dataset that grows by appending."""
    return h5py.Dataset(h5py.h5d.open(file.id, path.encode("utf-8"), dapl=_uncached()))


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, float) and value != value:
        return "nan"
    return value


def soft_link(file: h5py.File, path: str, target: str) -> None:
    """A soft link at ``path`` to ``target`` (missing parents created)."""
    name, lcpl = _name(path)
    file.id.links.create_soft(name, target.encode("utf-8"), lcpl=lcpl)


# -- streams -----------------------------------------------------------------------


def stored_as_given(dataset: h5py.Dataset) -> bool:
    """Whether a whole chunk of ``dataset`` is stored as the bytes of its rows: chunked,
    no filter (compression), chunks spanning whole points, fixed-size numbers. Such
    chunks can be written straight to the file (:func:`write_chunk`), without
    passing through the chunk cache."""
    dcpl = dataset.id.get_create_plist()
    return (dcpl.get_layout() == h5py.h5d.CHUNKED and dcpl.get_nfilters() == 0
            and dataset.chunks is not None and dataset.chunks[1:] == dataset.shape[1:]
            and dataset.dtype.kind in "biufc")


def filter_pipeline(dataset: h5py.Dataset) -> list[tuple[int, tuple[int, ...]]]:
    """The dataset's filters, in order: ``(filter id, cd_values)``."""
    dcpl = dataset.id.get_create_plist()
    found = []
    for index in range(dcpl.get_nfilters()):
        code, _, values, _ = dcpl.get_filter(index)
        found.append((int(code), tuple(int(v) for v in values)))
    return found


def grow(dsid: h5py.h5d.DatasetID, shape: tuple[int, ...]) -> None:
    """Set the dataset's extent to ``shape`` (``dataset.resize`` without its checks)."""
    dsid.set_extent(shape)


def write_chunk(dsid: h5py.h5d.DatasetID, offset: tuple[int, ...], chunk: Any) -> None:
    """Write the whole chunk at ``offset`` as it is, past the chunk cache and the
    filters: the dataset is :func:`stored_as_given`, or ``chunk`` is what its filters
    make of the chunk (all applied: filter mask 0)."""
    dsid.write_direct_chunk(offset, chunk)


def write_rows(dsid: h5py.h5d.DatasetID, offset: tuple[int, ...], block: Any) -> None:
    """Write ``block`` (C-contiguous, of the dataset's dtype) at ``offset``: what
    ``dataset[...] = block`` does, without its checks and conversions."""
    space = dsid.get_space()
    space.select_hyperslab(offset, block.shape)
    dsid.write(h5py.h5s.create_simple(block.shape), space, block)


# -- open files --------------------------------------------------------------------


def file_descriptor(file: h5py.File) -> int:
    """The descriptor of the file the HDF5 driver really opened."""
    return int(file.id.get_vfd_handle())


def held_here(path: str) -> Optional[tuple[bool, bool]]:
    """How this process holds ``path`` open through HDF5, if it does:
    ``(read_only, locking)`` of one of its openings; None if it does not.

    HDF5 opens a file once per process. Opening it again with another intent or other
    locking flags fails with an ``OSError`` without errno, like a file that is not
    HDF5; this is how the two are told apart without reading the message.
    """
    try:
        wanted = os.stat(path)
    except OSError:
        return None
    for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        try:
            name = os.fsdecode(fid.name)
            info = os.stat(name)
            if (info.st_dev, info.st_ino) != (wanted.st_dev, wanted.st_ino):
                continue
            read_only = fid.get_intent() == h5py.h5f.ACC_RDONLY
            locking = bool(fid.get_access_plist().get_file_locking()[0])
        except (OSError, ValueError, RuntimeError):
            continue
        return read_only, locking
    return None


# -- HDF5's own memory (calls h5py does not offer) ---------------------------------


@functools.lru_cache(maxsize=1)
def _hdf5_library() -> Any:
    """The HDF5 library h5py loaded, found among the process's mappings (Linux): it
    is loaded for h5py alone, so its symbols are not found by name. None elsewhere."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps
                            if "/libhdf5" in line and "_hl" not in line.rsplit("/", 1)[-1]})
    except OSError:
        return None
    for path in paths:
        try:
            library = ctypes.CDLL(path)
            library.H5garbage_collect.restype = ctypes.c_int
            library.H5set_free_list_limits.argtypes = (ctypes.c_int,) * 6
            library.H5set_free_list_limits.restype = ctypes.c_int
        except (OSError, AttributeError):
            continue
        return library
    return None


def limit_hdf5_free_lists(limits: tuple[int, int, int, int, int, int]) -> bool:
    """``H5set_free_list_limits(*limits)`` (bytes; -1: no limit); whether done."""
    library = _hdf5_library()
    if library is None:
        return False
    with _hdf5_lock:  # h5py's lock: no other thread is inside HDF5 meanwhile
        return int(library.H5set_free_list_limits(*limits)) >= 0


def collect_hdf5_garbage() -> bool:
    """``H5garbage_collect``: HDF5 frees the blocks its free lists keep; whether done.
    Safe from any thread (under h5py's lock)."""
    library = _hdf5_library()
    if library is None:
        return False
    with _hdf5_lock:
        return int(library.H5garbage_collect()) >= 0
