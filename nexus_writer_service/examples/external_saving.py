"""Save each new scan of a session to a plain HDF5 file: a consumer to copy and adapt.

:func:`save_session` follows the session with ``walk_on_new_events``: each NEW_NODE
there is a scan that started. It then walks that scan's own events with
``walk_events``, from the scan's beginning to its END_SCAN, writing as it goes:

NEW_NODE creates a channel's dataset (a lima node's group), NEW_DATA writes a
channel's block at its point indices (adds the references of newly saved lima
frames), END_SCAN records why the scan ended; then the file is closed.

Scans are saved one after the other in the calling thread: a slow scan delays the
next one, but nothing is lost, as the events stay in Redis (for the publisher's
retention time) and each scan's walk replays them from its beginning.

One file per scan, ``<output_dir>/<session>_<scan number>.h5`` (overwritten)::

    /                          attrs: session, scan_key, scan_name, scan_number,
                                      end_reason, end_message (written at END_SCAN)
    scan_info                  the scan_info dict as JSON text
    channels/<name>            one dataset per channel, first axis the point index,
                               dtype and point shape as declared; attrs: name, unit
    lima/<name>/filename       file of each saved frame  (group attrs: name,
    lima/<name>/index_in_file  index of it in that file   file_format, path_in_file)

Names stay flat: ``:`` and ``/`` become ``_`` (channel ``diode:diode1`` is
``channels/diode_diode1``); the ``name`` attribute keeps the original. Variable-length
1D channels are HDF5 variable-length datasets (one 1D array per point). A file
without ``end_reason`` was interrupted (``stop`` or Ctrl-C) before its scan ended.

Command line (prints each file saved; Ctrl-C stops it)::

    python -m nexus_writer_service.examples.external_saving SESSION OUTPUT_DIR \\
        [--redis-url URL] [--max-scans N]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from typing import Any, Callable, Sequence

import h5py
import numpy as np

from nexus_writer_service.data import (ChannelNode, EventData, EventType, LimaNode, ScanNode,
                                       StopHandle, get_session_node)
from nexus_writer_service.errors import ConfigurationError, NexusWriterError

__all__ = ["POLL_INTERVAL", "ScanFile", "hdf5_name", "save_scan", "save_session", "main"]

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.25
"""Seconds between two looks at ``stop`` while Redis has no new event."""

_CHUNK_BYTES = 1 << 16
_TEXT = h5py.string_dtype()


def hdf5_name(node_name: str) -> str:
    """The name of a node's dataset or group: ``:`` and ``/`` replaced by ``_``.

    Two nodes whose names differ only there would collide (h5py raises ValueError).
    """
    return node_name.replace(":", "_").replace("/", "_")


def _write_at(dataset: h5py.Dataset, first: int, values: Any) -> None:
    """Write ``values`` at rows ``first, first + 1, ...``, growing the dataset as needed."""
    last = first + len(values)
    if dataset.shape[0] < last:
        dataset.resize(last, axis=0)
    if last > first:
        dataset[first:last] = values


class ScanFile:
    """The HDF5 file of one scan, fed with the events of the scan's walk.

    Not thread-safe: one thread calls :meth:`write`. Use it as a context manager so
    that an error or Ctrl-C still closes the file; :meth:`close` is idempotent.
    """

    def __init__(self, path: str, scan: ScanNode):
        attrs = dict(session=scan.session_name, scan_key=scan.key, scan_name=scan.name,
                     scan_number=scan.number)
        scan_info = json.dumps(scan.info)  # read from Redis before the file is created
        self._file = h5py.File(path, "w")
        self._file.attrs.update(attrs)
        self._file.create_dataset("scan_info", data=scan_info, dtype=_TEXT)
        self._channels = self._file.create_group("channels")
        self._limas = self._file.create_group("lima")

    def write(self, event_type: EventType, node: Any, event_data: EventData) -> None:
        """Store one event; the events of subscan nodes are ignored."""
        if event_type is EventType.NEW_NODE and isinstance(node, ChannelNode):
            self._add_channel(node)
        elif event_type is EventType.NEW_NODE and isinstance(node, LimaNode):
            self._add_lima(node)
        elif event_type is EventType.NEW_DATA and isinstance(node, ChannelNode):
            self._add_points(node, event_data.first_index, event_data.data)
        elif event_type is EventType.NEW_DATA and isinstance(node, LimaNode):
            self._add_frames(node, event_data.data.last_image_saved)
        elif event_type is EventType.END_SCAN:
            reason = event_data.reason
            self._file.attrs["end_reason"] = reason.value if reason is not None else ""
            self._file.attrs["end_message"] = event_data.message

    def _add_channel(self, node: ChannelNode) -> None:
        dtype: Any = h5py.vlen_dtype(node.dtype) if node.variable_length else node.dtype
        shape = () if node.variable_length else node.shape
        rows = max(1, _CHUNK_BYTES // (dtype.itemsize * math.prod(shape)))
        dataset = self._channels.create_dataset(
            hdf5_name(node.name), shape=(0,) + shape,
            maxshape=(None,) + shape, chunks=(rows,) + shape, dtype=dtype)
        dataset.attrs.update(name=node.name, unit=node.unit or "")

    def _add_points(self, node: ChannelNode, first: int, points: Any) -> None:
        dataset = self._channels[hdf5_name(node.name)]
        if not node.variable_length:
            _write_at(dataset, first, points)
            return
        if dataset.shape[0] < first + len(points):
            dataset.resize(first + len(points), axis=0)
        for i, point in enumerate(points):  # one by one: h5py makes equal lengths one 2D array
            dataset[first + i] = point

    def _add_lima(self, node: LimaNode) -> None:
        group = self._limas.create_group(hdf5_name(node.name))
        group.attrs.update(name=node.name, file_format=node.file_format,
                           path_in_file=node.path_in_file)
        for name, dtype in (("filename", _TEXT), ("index_in_file", np.int64)):
            group.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(1024,), dtype=dtype)

    def _add_frames(self, node: LimaNode, last_image_saved: int) -> None:
        group = self._limas[hdf5_name(node.name)]
        first = group["filename"].shape[0]
        references = node.image_references(first, last_image_saved + 1)
        _write_at(group["filename"], first, [ref.filename for ref in references])
        _write_at(group["index_in_file"], first, [ref.index_in_file for ref in references])

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ScanFile":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def save_scan(scan: ScanNode, path: str, *, stop: StopHandle | None = None,
              poll_interval: float = POLL_INTERVAL) -> bool:
    """Write ``scan`` to ``path``; True once its END_SCAN is written, False if stopped.

    Blocks until the scan ends or ``stop`` is set. A dead publisher cannot block it
    for ever: when its lease expires, the walk ends the scan with PUBLISHER_LOST.
    """
    with ScanFile(path, scan) as scan_file:
        for event_type, node, event_data in scan.walk_events(stop=stop,
                                                             poll_interval=poll_interval):
            scan_file.write(event_type, node, event_data)
            if event_type is EventType.END_SCAN:
                return True
    return False


def save_session(
    session: str, output_dir: str, redis_url: str | None = None, *,
    stop: StopHandle | None = None, timeout: float | None = None, from_next: bool = True,
    max_scans: int | None = None, on_scan_saved: Callable[[str], None] | None = None,
    poll_interval: float = POLL_INTERVAL,
) -> list[str]:
    """Save the scans of ``session``, one file each; return the paths of the files saved.

    Blocks in the calling thread until ``max_scans`` scans are saved or ``stop`` is
    set (looked at every ``poll_interval`` seconds); a scan cut short by ``stop`` is
    left without ``end_reason`` and not returned. ``from_next``: only the scans that
    start after this call, else also every scan still in Redis. ``timeout``: raise
    :class:`~nexus_writer_service.errors.EventTimeout` when the session stream brings
    nothing new for that long (time spent saving a scan counts). ``on_scan_saved(path)``
    runs in this thread after each file is closed; its exceptions are logged. Redis
    and file errors are raised once the current file and the connection are closed.
    """
    if max_scans is not None and max_scans < 1:
        raise ValueError(f"max_scans must be >= 1 or None, got {max_scans!r}")
    session_node = get_session_node(session, redis_url)
    saved: list[str] = []
    try:
        os.makedirs(output_dir, exist_ok=True)
        scans = session_node.walk_on_new_events(from_next=from_next, stop=stop, timeout=timeout,
                                                poll_interval=poll_interval)
        logger.info("listening to session %r, saving to %s", session, output_dir)
        for event_type, scan, _ in scans:
            if event_type is not EventType.NEW_NODE:
                continue  # END_SCAN: the scan's own walk has seen it already
            path = os.path.join(output_dir, f"{session}_{scan.number}.h5")
            if not save_scan(scan, path, stop=stop, poll_interval=poll_interval):
                break
            logger.info("saved scan %s to %s", scan.key, path)
            saved.append(path)
            if on_scan_saved is not None:
                try:
                    on_scan_saved(path)
                except Exception:
                    logger.exception("on_scan_saved(%r) failed; saving goes on", path)
            if max_scans is not None and len(saved) >= max_scans:
                break
    finally:
        session_node.connection.close()
    return saved


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; exit status 0 done, 1 Redis or file error, 2 usage, 130 Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m nexus_writer_service.examples.external_saving",
        description="Save every new scan of a session to <OUTPUT_DIR>/<SESSION>_<number>.h5.")
    parser.add_argument("session", metavar="SESSION")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR")
    parser.add_argument("--redis-url", help="default: the REDIS_URL environment variable")
    parser.add_argument("--max-scans", type=int, metavar="N",
                        help="exit after saving N scans (default: run until Ctrl-C)")
    args = parser.parse_args(argv)
    if args.max_scans is not None and args.max_scans < 1:
        parser.error(f"--max-scans must be >= 1, got {args.max_scans}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        save_session(args.session, args.output_dir, args.redis_url, max_scans=args.max_scans,
                     on_scan_saved=lambda path: print(path, flush=True))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (NexusWriterError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigurationError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
