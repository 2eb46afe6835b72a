"""What an acquisition program calls to publish scans into Redis.

``Publisher`` (one per session and process) creates scans; each ``ScanPublisher``
declares nodes, sends blocks of points (one round trip per block, raw bytes) and
ends the scan. A publisher holds a lease on every scan it runs, refreshed by ONE
background thread owned by the ``Publisher`` and stopped by :meth:`Publisher.close`;
when the process dies the lease expires and readers end the scan with
``PUBLISHER_LOST``. The same ``ScanPublisher`` must not be used from two threads
at once; different scans may be published from different threads.

Nothing accepted is lost silently. Data entries go out without waiting for their
replies; when the connection drops, the publisher reconnects (for at most
``reconnect_timeout``), asks Redis which of the unanswered entries it stored (see
:mod:`.losses`) and sends the others again. Points that cannot be stored (Redis
did not come back in time, refused them, or came back without the scan) are
named, channel and point range, by a :class:`~nexus_writer_service.errors.PointsLostError`
raised to the caller and in the scan's end message (reason FAILED). A scan whose
lease expired while Redis could not be reached is ended by the publisher, when
Redis is back, with a message naming the outage.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from types import TracebackType
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import redis

from ..errors import ConfigurationError, PointsLostError, RedisUnavailableError, ScanStateError
from . import codec
from ._fast_redis import StreamWriter
from .connection import SESSION_STREAM_MAXLEN, Client, connect, end_scan, redis_errors
from .events import (
    EndReason,
    LimaProgress,
    NodeType,
    RawBlock,
    encode_data,
    encode_info,
    encode_lima,
    encode_node,
    encode_prepared,
    encode_scan_reference,
    end_on_exit,
    merge_info,
    encode_session_new,
)
from .keys import ScanKeys, SessionKeys, check_name
from .losses import PointRange, SentEntry, describe
from .publish_recovery import Recovery

__all__ = ["Publisher", "ScanPublisher"]

logger = logging.getLogger(__name__)

LIMA_FORMATS = ("hdf5", "edf")


class _Channel:
    __slots__ = ("name", "index", "dtype", "shape", "npoints")

    def __init__(self, name: str, index: int, dtype: np.dtype[Any], shape: tuple[int, ...]):
        self.name = name
        self.index = index
        self.dtype = dtype
        self.shape = shape
        self.npoints = 0


class ScanPublisher:
    """One scan being published. Create it with :meth:`Publisher.create_scan`.

    As a context manager the scan ends with SUCCESS, or FAILED (ABORTED for
    ``KeyboardInterrupt``) when the block raises.
    """

    def __init__(self, publisher: "Publisher", keys: ScanKeys, name: str, number: int,
                 subscans: list[str], uid: str = ""):
        self._publisher = publisher
        self.uid = uid
        self._lost: list[PointRange] = []
        self._lost_why = ""
        self._lost_told = False
        #: why the scan ended other than by :meth:`end`, for the caller's next call
        self._ended_why = ""
        self._client = publisher._client
        self._writer = publisher._writer
        self.keys = keys
        self.name = name
        self.number = number
        self.subscans = subscans
        self._channels: dict[str, _Channel] = {}
        self._nodes: set[str] = set(subscans)
        self._lima: dict[str, LimaProgress] = {}
        self._scans_nodes: set[str] = set()
        self._nindex = len(subscans)
        self.ended = False

    @property
    def key(self) -> str:
        return self.keys.base

    @property
    def lost(self) -> list[PointRange]:
        """The points accepted by :meth:`send` that could not be stored in Redis."""
        return list(self._lost)

    def _loss_message(self) -> str:
        npoints = sum(r.stop - r.first for r in self._lost)
        return (f"{npoints} points accepted by the publisher could not be stored in Redis "
                f"({self._lost_why}): {describe(self._lost)}")

    def _record_loss(self, ranges: list[PointRange], why: str) -> None:
        """Called by the publisher (with its stream connection locked)."""
        if ranges:
            self._lost.extend(ranges)
            self._lost_why = "; ".join(filter(None, [self._lost_why, why]))

    def _raise_lost(self) -> None:
        self._lost_told = True
        raise PointsLostError(f"scan {self.name!r} ({self.key}): {self._loss_message()}",
                              [(r.channel, r.first, r.stop) for r in self._lost])

    def _check_running(self) -> None:
        if self._lost:
            self._raise_lost()
        if self.ended:
            raise ScanStateError(f"scan {self.name!r} ({self.key}) has already ended"
                                 + (f": {self._ended_why}" if self._ended_why else ""))

    def _subscan(self, subscan: str | None, what: str) -> str:
        if subscan is None:
            return self.subscans[0]
        if subscan not in self.subscans:
            raise ValueError(f"{what}: unknown subscan {subscan!r}; scan has {self.subscans}")
        return subscan

    def _declare(self, name: str, node_type: NodeType, info: dict[str, Any]) -> int:
        self._check_running()
        if not isinstance(name, str) or not name or any(c in name for c in "\n\r\t\0"):
            raise ValueError(f"invalid node name {name!r}: a non-empty single-line string")
        if name in self._nodes:
            raise ValueError(f"node {name!r} is already declared in scan {self.name!r}")
        index = self._nindex
        self._writer.flush(f"sending data to {self.key}")
        fields = encode_node(name, node_type, index, info)
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(self.keys.nodes, name, fields[b"y"] + b"|" + fields[b"x"] + b"|" + fields[b"i"])
        pipe.xadd(self.keys.events, fields)
        with redis_errors(f"declaring {name!r} in {self.key}"):
            pipe.execute()
        self._nodes.add(name)
        self._nindex += 1
        return index

    def add_channel(
        self, name: str, dtype: Any, shape: Sequence[int] = (), *, subscan: str | None = None,
        unit: str | None = None, info: Mapping[str, Any] | None = None,
    ) -> None:
        """Declare a channel whose points have ``dtype`` and ``shape``.

        ``shape`` ``()`` for scalars, ``(n,)`` for spectra, any fixed nD shape, or
        ``(-1,)`` for variable-length 1D points.
        """
        what = f"channel {name!r} of scan {self.name!r}"
        dt = np.dtype(dtype)
        descr = codec.dtype_to_text(dt)
        dims = codec.check_point_shape(shape, what)
        node_info = dict(info or {})
        node_info.update(dtype=descr, shape=list(dims), subscan=self._subscan(subscan, what))
        if unit is not None:
            node_info["unit"] = str(unit)
        index = self._declare(name, NodeType.CHANNEL, codec.jsonable(node_info))
        self._channels[name] = _Channel(name, index, dt, dims)

    def add_lima(
        self, name: str, *, directory: str, prefix: str, suffix: str = ".h5",
        file_format: str = "hdf5", frames_per_file: int = 100, first_file_number: int = 0,
        path_in_file: str = "/entry_0000/measurement/data", dtype: Any = "uint16",
        shape: Sequence[int] = (), subscan: str | None = None,
        info: Mapping[str, Any] | None = None, file_template: str = "",
        frames_per_acquisition: int = 0,
    ) -> None:
        """Declare a 2D detector whose frames are saved in files by the detector itself.

        ``file_template``: a printf template of the file number (``/d/cam_%04d.h5``)
        naming the files instead of ``directory``, ``prefix`` and ``suffix``;
        ``frames_per_acquisition`` > 0: the scan runs several acquisitions of that many
        frames, each starting a new file (see :class:`~.nodes.LimaNode`)."""
        what = f"lima node {name!r} of scan {self.name!r}"
        if file_format not in LIMA_FORMATS:
            raise ValueError(f"{what}: file_format {file_format!r} is not one of {LIMA_FORMATS}")
        if int(frames_per_file) < 1 or int(first_file_number) < 0:
            raise ValueError(f"{what}: frames_per_file >= 1 and first_file_number >= 0 needed")
        node_info = dict(info or {})
        node_info.update(
            directory=str(directory), prefix=str(prefix), suffix=str(suffix),
            file_format=file_format, frames_per_file=int(frames_per_file),
            first_file_number=int(first_file_number), path_in_file=str(path_in_file),
            dtype=codec.dtype_to_text(dtype), shape=list(codec.check_point_shape(shape, what)),
            subscan=self._subscan(subscan, what),
        )
        if file_template:
            node_info["file_template"] = str(file_template)
        if frames_per_acquisition:
            node_info["frames_per_acquisition"] = int(frames_per_acquisition)
        self._declare(name, NodeType.LIMA, codec.jsonable(node_info))
        self._lima[name] = LimaProgress(-1, -1)

    def add_scans(self, name: str = "SUBSCANS", *, subscan: str | None = None) -> None:
        """Declare the node that lists the scans this scan groups: a *sequence* (a
        scan group in BLISS, whose channel ``SUBSCANS`` names each scan it runs).
        Give it the scans with :meth:`add_scan_reference`; mark the scan_info
        ``is_scan_sequence`` as BLISS does."""
        what = f"scans node {name!r} of scan {self.name!r}"
        self._declare(name, NodeType.SCANS, {"subscan": self._subscan(subscan, what)})
        self._scans_nodes.add(name)

    def add_scan_reference(self, scan: "ScanPublisher | str", number: int | None = None,
                           *, name: str = "SUBSCANS") -> None:
        """The sequence groups ``scan`` (a :class:`ScanPublisher`, or the key of a scan
        published elsewhere, with its ``number`` if known): its file gets a link to
        that scan's entries. A key of no scan is published as given: the file says
        that the scan could not be found."""
        self._check_running()
        if name not in self._scans_nodes:
            raise ValueError(f"{name!r} is not a scans node of scan {self.name!r}: call "
                             "add_scans() first")
        if isinstance(scan, ScanPublisher):
            key, number = scan.key, scan.number if number is None else number
        elif isinstance(scan, str) and scan:
            key = scan
        else:
            raise TypeError(f"a scan reference is a ScanPublisher or a scan key, not {scan!r}")
        self._writer.flush(f"sending data to {self.key}")
        with redis_errors(f"referencing scan {key} in {self.key}"):
            self._client.xadd(self.keys.events, encode_scan_reference(name, key, number))

    def prepare(self) -> None:
        """Announce that every node is declared and acquisition starts."""
        self._check_running()
        self._writer.flush(f"sending data to {self.key}")
        with redis_errors(f"preparing {self.key}"):
            self._client.xadd(self.keys.events, encode_prepared())

    def send(self, blocks: Mapping[str, Any]) -> None:
        """Send one block of new points for each named channel as one stream entry.

        The entry is on its way to Redis when this returns; its reply is checked
        later (a failure is raised by a later call, at the latest by :meth:`end`),
        so publishing does not wait one round trip per block. Point indices are
        assigned here, consecutively per channel: a reader can therefore tell a
        gap or a duplicate from a block.

        After a dropped connection this call may block up to the publisher's
        ``reconnect_timeout`` while it reconnects and sends again what Redis did not
        store.

        :raises PointsLostError: points this scan accepted (in this call or an
            earlier one) could not be stored; it names them, and every later call
            of this scan raises it too (the scan cannot go on over a gap): end it
        """
        self._check_running()
        raw_blocks: list[RawBlock] = []
        channels = []
        counts: list[int] = []
        for name, data in blocks.items():
            try:
                channel = self._channels[name]
            except KeyError:
                raise ValueError(
                    f"channel {name!r} is not declared in scan {self.name!r}: "
                    "call add_channel() first"
                ) from None
            what = f"channel {name!r} of scan {self.name!r}"
            lengths: bytes | None = None
            if channel.shape == (-1,):
                raw, lengths, n = codec.ragged_to_bytes(data, channel.dtype, what)
            else:
                raw, n = codec.array_to_bytes(data, channel.dtype, channel.shape, what)
            raw_blocks.append((channel.index, channel.npoints, raw, lengths))
            channels.append(channel)
            counts.append(n)
        if not counts:
            return
        args: list[Any] = ["XADD", self.keys.events, "*"]
        for item in encode_data(raw_blocks).items():
            args.extend(item)
        for channel, n in zip(channels, counts):
            channel.npoints += n
        self._writer.send(f"sending data to {self.key}", SentEntry(self, raw_blocks, counts),
                          *args)
        if self._lost:
            self._raise_lost()

    def npoints(self, name: str) -> int:
        """Number of points sent so far on channel ``name``."""
        return self._channels[name].npoints

    def update_lima(self, name: str, last_image_acquired: int, last_image_saved: int) -> None:
        """Publish the progress of a lima detector (frame indices, -1 for none)."""
        self._check_running()
        if name not in self._lima:
            raise ValueError(f"lima node {name!r} is not declared in scan {self.name!r}")
        progress = LimaProgress(int(last_image_acquired), int(last_image_saved))
        self._writer.flush(f"sending data to {self.key}")
        with redis_errors(f"updating lima {name!r} of {self.key}"):
            self._client.xadd(self.keys.events, encode_lima(name, progress))
        self._lima[name] = progress

    def update_info(self, changes: Mapping[str, Any]) -> None:
        """Complete the scan's scan_info, as BLISS does at PREPARED (``devices``,
        ``channels``) and at its end (``positioners_end``, ``end_time``, ``comments``...):
        ``changes`` are merged into it (objects key by key, see
        :func:`~nexus_writer_service.data.events.merge_info`) for readers to come, and
        sent to the readers of the scan as an INFO_UPDATE event.

        :raises ScanStateError: the scan has ended (an update then reaches no file)
        """
        if self.ended:
            raise ScanStateError(
                f"scan {self.name!r} ({self.key}) has ended: an info update after the end "
                "reaches no file; send it before end()")
        if not isinstance(changes, Mapping):
            raise TypeError(f"an info update must be a dict, not {type(changes).__name__}")
        changes = codec.jsonable(changes)
        entry = encode_info(changes)
        self._writer.flush(f"sending data to {self.key}")
        with redis_errors(f"updating the scan_info of {self.key}"):
            raw = self._client.hget(self.keys.info, "scan_info")
            info = codec.from_json(raw or b"{}", f"scan_info of {self.key}")
            merged = merge_info(info if isinstance(info, dict) else {}, changes)
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(self.keys.info, "scan_info", codec.to_json(merged))
            pipe.xadd(self.keys.events, entry)
            pipe.execute()

    def end(self, reason: EndReason | str = EndReason.SUCCESS, message: str = "") -> bool:
        """End the scan; False if it had already ended (e.g. lease lost)."""
        reason = EndReason(reason)
        if reason is EndReason.PUBLISHER_LOST:
            raise ValueError("PUBLISHER_LOST is reserved for scans whose publisher died")
        if self.ended:
            if self._lost and not self._lost_told:
                self._raise_lost()
            return False
        self.ended = True
        self._publisher._forget(self)
        self._writer.flush(f"sending data to {self.key}")
        if self._lost:
            reason = EndReason.FAILED
            message = "; ".join(filter(None, [self._loss_message(), message]))
        try:
            ended = self._publisher._end_in_redis(self, reason, message)
        finally:
            if self._lost and not self._lost_told:
                self._raise_lost()
        return ended

    def __enter__(self) -> "ScanPublisher":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.end(*end_on_exit(exc_type, exc))


class Publisher:
    """Publishes the scans of one session.

    ``lease`` (seconds): how long readers wait for a silent, dead publisher before
    ending its scans with PUBLISHER_LOST. ``retention`` (seconds): how long the keys
    of an ended scan stay in Redis (0: forever). ``reconnect_timeout`` (seconds,
    default the lease): how long a call that sends data waits for Redis to come back
    after the connection dropped before the unanswered points are given up (named
    by a :class:`~nexus_writer_service.errors.PointsLostError`).
    """

    def __init__(self, session: str, redis_url: str | None = None, *, lease: float = 10.0,
                 retention: float = 24 * 3600.0, client: Client | None = None,
                 reconnect_timeout: float | None = None):
        self.session = check_name(session)
        if not lease > 0.2:
            raise ConfigurationError(f"lease must be more than 0.2 s, got {lease!r}")
        if retention < 0:
            raise ConfigurationError(f"retention must be >= 0 s, got {retention!r}")
        if reconnect_timeout is not None and not reconnect_timeout >= 0:
            raise ConfigurationError(
                f"reconnect_timeout must be >= 0 s, got {reconnect_timeout!r}")
        self.lease = float(lease)
        self.retention = float(retention)
        self.reconnect_timeout = self.lease if reconnect_timeout is None \
            else float(reconnect_timeout)
        self._keys = SessionKeys(self.session)
        self._client = client if client is not None else connect(redis_url)
        self._own_client = client is None
        self._writer = StreamWriter(self._client, Recovery(self))
        self._scans: dict[str, ScanPublisher] = {}
        #: scans ended while Redis could not be reached, ended in Redis when it is back
        self._unended: list[tuple[ScanPublisher, EndReason, str]] = []
        #: when the lease thread first failed to reach Redis (wall clock, for messages)
        self._outage_since: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def create_scan(self, scan_info: Mapping[str, Any], name: str | None = None,
                    number: int | None = None) -> ScanPublisher:
        """Create a scan and announce it on the session stream.

        One subscan is declared per top master of ``scan_info["acquisition_chain"]``
        (in its order), or one named ``"main"`` when there is no chain.
        """
        if self._closed:
            raise ScanStateError(f"publisher of session {self.session!r} is closed")
        if not isinstance(scan_info, Mapping):
            raise TypeError(f"scan_info must be a dict, got {type(scan_info).__name__}")
        info = codec.jsonable(scan_info)
        chain = info.get("acquisition_chain") or {}
        if not isinstance(chain, dict):
            raise ValueError("scan_info['acquisition_chain'] must be a dict of top masters")
        subscans = list(chain) or ["main"]
        with redis_errors(f"creating a scan in session {self.session!r} "
                          f"(keys {self._keys.counter}, {self._keys.readers})",
                          foreign_on_error=True):
            readers = self._client.smembers(self._keys.readers)
            scan_id = int(self._client.incr(self._keys.counter))
        if number is None:
            number = int(info.get("scan_nb", scan_id))
        name = str(name or info.get("name") or f"scan{number}")
        info.setdefault("scan_nb", number)
        keys = self._keys.scan(scan_id)
        uid = uuid.uuid4().hex
        pipe = self._client.pipeline(transaction=True)
        pipe.set(keys.lease, b"1", px=int(self.lease * 1000))
        pipe.hset(keys.info, mapping={
            "name": name, "number": number, "session": self.session,
            "scan_info": codec.to_json(info), "retention": int(self.retention),
            "lease": self.lease, "uid": uid,
        })
        for index, subscan in enumerate(subscans):
            fields = encode_node(subscan, NodeType.SUBSCAN, index, {"index": index + 1})
            pipe.hset(keys.nodes, subscan, fields[b"y"] + b"|" + fields[b"x"] + b"|" + fields[b"i"])
            pipe.xadd(keys.events, fields)
        if readers:
            pipe.hset(keys.acks, mapping={reader: b"0-0" for reader in readers})
        pipe.xadd(self._keys.stream, encode_session_new(keys.base, name, number),
                  maxlen=SESSION_STREAM_MAXLEN, approximate=True)
        with redis_errors(f"creating scan {keys.base}"):
            pipe.execute()
        scan = ScanPublisher(self, keys, name, number, subscans, uid)
        with self._lock:
            self._scans[keys.base] = scan
            self._ensure_lease_thread()
        return scan

    def _forget(self, scan: ScanPublisher) -> None:
        with self._lock:
            if self._scans.get(scan.key) is scan:
                del self._scans[scan.key]

    def _end_in_redis(self, scan: ScanPublisher, reason: EndReason, message: str) -> bool:
        """End ``scan`` in Redis; if Redis cannot be reached, the lease thread does it
        when Redis is back (and this raises the error)."""
        try:
            return end_scan(self._client, scan.keys, reason, message, retention=self.retention)
        except RedisUnavailableError:
            with self._lock:
                self._unended.append((scan, reason, message))
                self._ensure_lease_thread()
            raise

    def _ensure_lease_thread(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._refresh_leases, name=f"lease-{self.session}", daemon=True
            )
            self._thread.start()

    def _refresh_leases(self) -> None:
        """Runs in the lease thread until :meth:`close`; also trims acknowledged data,
        and ends the scans that could not be ended while Redis was unreachable."""
        period = self.lease / 3.0
        while not self._stop.wait(period):
            with self._lock:
                scans = list(self._scans.values())
                unended, self._unended = self._unended, []
            try:
                self._end_unended(unended)
                if scans:
                    pipe = self._client.pipeline(transaction=False)
                    for scan in scans:
                        pipe.pexpire(scan.keys.lease, int(self.lease * 1000))
                    renewed = pipe.execute()
                    for scan, alive in zip(scans, renewed):
                        if not alive:
                            self._lease_lost(scan)
                    self.trim(scans)
                if self._outage_since is not None:
                    logger.warning("session %s: Redis reachable again after %.1f s",
                                   self.session, time.time() - self._outage_since)
                    self._outage_since = None
            except (redis.RedisError, RedisUnavailableError) as exc:
                if self._outage_since is None:
                    self._outage_since = time.time()
                logger.warning("session %s: cannot refresh scan leases (%s)", self.session, exc)

    def _end_unended(self, unended: list[tuple[ScanPublisher, EndReason, str]]) -> None:
        for at, (scan, reason, message) in enumerate(unended):
            try:
                if self._same_scan(scan):
                    end_scan(self._client, scan.keys, reason, message, retention=self.retention)
            except BaseException:
                with self._lock:
                    self._unended[:0] = unended[at:]
                raise

    def _same_scan(self, scan: ScanPublisher) -> bool:
        """Whether the keys of ``scan`` in Redis are still those of this scan (Redis
        restarted without its data gives the same key to a new scan)."""
        return self._client.hget(scan.keys.info, "uid") == scan.uid.encode()

    def _outage(self) -> str:
        if self._outage_since is None:
            return (f"the publisher did not renew its lease of {self.lease:g} s in time "
                    "(process suspended or overloaded)")
        return (f"Redis could not be reached from "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self._outage_since))} "
                f"for {time.time() - self._outage_since:.1f} s, longer than the publisher's "
                f"lease of {self.lease:g} s")

    def _lease_lost(self, scan: ScanPublisher) -> None:
        """The lease of a running scan has expired: its readers may have ended it as
        PUBLISHER_LOST already; otherwise end it FAILED, saying why."""
        why = self._outage()
        self._forget(scan)
        # the reason first: a caller that sees the scan ended is told why at once
        scan._ended_why = f"its lease expired: {why}"
        scan.ended = True
        if not self._same_scan(scan):
            scan._ended_why = f"{why}, and its keys are gone from Redis"
        elif end_scan(self._client, scan.keys, EndReason.FAILED, why, retention=self.retention):
            scan._ended_why = f"ended FAILED by the publisher: {why}"
        else:
            scan._ended_why = f"ended by its readers (its lease expired): {why}"
        logger.error("session %s: scan %s %s", self.session, scan.key, scan._ended_why)

    def trim(self, scans: Iterable[ScanPublisher] | None = None) -> None:
        """Drop entries that every registered reader has acknowledged."""
        if scans is None:
            with self._lock:
                scans = list(self._scans.values())
        for scan in scans:
            acks = self._client.hvals(scan.keys.acks)
            if not acks:
                continue
            oldest = min(acks, key=lambda p: tuple(int(x) for x in p.split(b"-")))
            if oldest != b"0-0":
                self._client.xtrim(scan.keys.events, minid=oldest, approximate=False)

    def running_scans(self) -> list[ScanPublisher]:
        with self._lock:
            return list(self._scans.values())

    def close(self, end_running: EndReason | None = EndReason.ABORTED) -> None:
        """Stop the lease thread; end scans still running with ``end_running``."""
        if self._closed:
            return
        self._closed = True
        if end_running is not None:
            for scan in self.running_scans():
                try:
                    scan.end(end_running, "publisher closed while the scan was running")
                except (RedisUnavailableError, PointsLostError) as exc:
                    logger.error("session %s: closing: %s", self.session, exc)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._unended:
            logger.error("session %s: closed before Redis could be reached to end %s",
                         self.session, ", ".join(scan.key for scan, _, _ in self._unended))
        self._writer.close()
        if self._own_client:
            self._client.close()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
