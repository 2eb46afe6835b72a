"""Publishing simulated scans into a session, with their lima files and ground truth.

:func:`simulate` is the whole job of ``nexus-writer-simulate``: it connects to
Redis, opens ONE :class:`~nexus_writer_service.data.Publisher` (whose lease thread
it closes before returning, whatever happens) and publishes the selected scan
types one after the other in the calling thread. :func:`publish_plan` publishes
one :class:`~.plan.ScanPlan` with a publisher the caller owns.

Blocking: publishing sleeps ``count_time`` per point when it is positive; a
``stop`` event (anything with ``is_set()`` and ``wait(timeout)``) ends the
current scan with ABORTED at the next block and publishes no further scans.
"""

from __future__ import annotations

import datetime
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

import redis

from ..data import EndReason, Publisher, ScanPublisher, StopHandle, connect
from ..data.connection import redis_errors, resolve_redis_url
from ..data.keys import SessionKeys, check_name
from ..errors import ConfigurationError
from .lima import LimaFileWriter
from .plan import LIMA_FILE_FORMATS, Block, ScanParameters, ScanPlan
from .scans import SEQUENCE_TYPES, build_scan, build_sequence, resolve_scan_names
from .truth import ScanTruthWriter, TruthWriter

if TYPE_CHECKING:
    from .blissdata_publish import BlissdataPublisher, BlissdataScan

#: What publishes the simulated scans: our own publisher, or blissdata's.
AnyPublisher = Union[Publisher, "BlissdataPublisher"]
AnyScan = Union[ScanPublisher, "BlissdataScan"]

__all__ = [
    "DATA_SOURCES",
    "PUBLISH_PERIOD",
    "SimulationOptions",
    "PublishedScan",
    "default_root",
    "points_per_block",
    "publish_plan",
    "publish_sequence",
    "simulate",
]

logger = logging.getLogger(__name__)

#: Where the simulator publishes: our own ``nws:`` streams, or through blissdata 2.x
#: as BLISS 2.x does (:mod:`.blissdata_publish`, the ``blissdata`` extra).
DATA_SOURCES = ("nws", "blissdata")

PUBLISH_PERIOD = 0.1
"""With a positive count time, points are sent at least this often (seconds)."""


class StopEvent(StopHandle, Protocol):
    """A :class:`StopHandle` that can also be waited on, such as a ``threading.Event``."""

    def wait(self, timeout: float | None = None) -> bool: ...


def default_root() -> str:
    """``<system temporary directory>/nexus-writer-simulate`` (read at call time)."""
    return os.path.join(tempfile.gettempdir(), "nexus-writer-simulate")


@dataclass(frozen=True)
class SimulationOptions:
    """What to publish, where, and how fast.

    ``scans``: scan type names or ``"all"`` (empty: all). ``npoints``: size of
    every scan (``None``: each type's default). ``count_time``: seconds per point,
    0 for as fast as possible. ``root``: directory of the lima files and of the
    files the writer is told to write (``None``: :func:`default_root`).
    ``truth``: path of the ground-truth HDF5 file to write, if any.
    ``block_size``: the most points sent per Redis round trip. ``lima_format``: the
    file format of the simulated lima detectors, ``"hdf5"`` or ``"edf"``;
    ``lima_frames_per_file``, ``lima_frames_per_acquisition`` (0: one acquisition per
    scan; else each acquisition starts a new file) and ``lima_first_file_number``
    their file naming (see :class:`~.plan.LimaSpec`).
    ``master_files``: each scan names a dataset collection and a proposal master file
    in ``nexuswriter.masterfiles``, as BLISS does under the ESRF data policy.
    ``data_source``: ``"nws"`` publishes with our own publisher, ``"blissdata"`` with
    blissdata 2.x (a Redis with the RedisJSON and RediSearch modules; ``lease``,
    ``retention`` and ``reconnect_timeout`` are our publisher's and do not apply).
    """

    session: str = "demo"
    scans: tuple[str, ...] = ()
    redis_url: str | None = None
    root: str | None = None
    npoints: int | None = None
    count_time: float = 0.0
    nchannels: int = 128
    mca_detectors: int = 1
    repeat: int = 1
    seed: int = 0
    truth: str | None = None
    lease: float = 10.0
    retention: float = 24 * 3600.0
    reconnect_timeout: float | None = None
    block_size: int = 1000
    lima_format: str = "hdf5"
    master_files: bool = False
    data_source: str = "nws"
    lima_frames_per_file: int = 10
    lima_frames_per_acquisition: int = 0
    lima_first_file_number: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigurationError` naming the first invalid option."""
        check_name(self.session)
        resolve_scan_names(self.scans)
        checks = [
            ("npoints", self.npoints is None or self.npoints >= 1, ">= 1"),
            ("count_time", 0 <= self.count_time < float("inf"), "finite and >= 0 seconds"),
            ("seed", self.seed >= 0, ">= 0"),
            ("nchannels", self.nchannels >= 1, ">= 1"),
            ("mca_detectors", self.mca_detectors >= 1, ">= 1"),
            ("repeat", self.repeat >= 1, ">= 1"),
            ("lease", self.lease > 0.2, "> 0.2 seconds"),
            ("retention", self.retention >= 0, ">= 0 seconds"),
            ("reconnect_timeout", self.reconnect_timeout is None or
             0 <= self.reconnect_timeout < float("inf"), "finite and >= 0 seconds"),
            ("block_size", self.block_size >= 1, ">= 1"),
            ("lima_frames_per_file", self.lima_frames_per_file >= 1, ">= 1"),
            ("lima_frames_per_acquisition", self.lima_frames_per_acquisition >= 0, ">= 0"),
            ("lima_first_file_number", self.lima_first_file_number >= 0, ">= 0"),
            ("lima_format", self.lima_format in LIMA_FILE_FORMATS,
             f"one of {', '.join(LIMA_FILE_FORMATS)}"),
            ("data_source", self.data_source in DATA_SOURCES,
             f"one of {', '.join(DATA_SOURCES)}"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigurationError(
                    f"{name} must be {expected}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class PublishedScan:
    """One scan as published: its Redis key, how many points, how it ended."""

    kind: str
    name: str
    number: int
    key: str
    npoints: int
    end_reason: EndReason
    end_message: str = ""
    filename: str = ""
    duration: float = 0.0
    lima_files: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """One line for people: ``kind #number key points reason (duration)``."""
        line = (f"{self.kind:<16} #{self.number:<5} {self.key:<32} {self.npoints:>9} points  "
                f"{self.end_reason.value:<8} {self.duration:8.3f} s")
        return f"{line}  {self.end_message}" if self.end_message else line


def points_per_block(count_time: float, block_size: int) -> int:
    """Points per round trip: ``block_size``, or fewer so that a paced scan sends often."""
    if count_time <= 0:
        return block_size
    return max(1, min(block_size, int(PUBLISH_PERIOD / count_time)))


def _wait_until(deadline: float, stop: StopEvent | None) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return
    if stop is not None:
        stop.wait(remaining)
    else:
        time.sleep(remaining)


def _declare(scan: AnyScan, plan: ScanPlan) -> dict[str, LimaFileWriter]:
    for spec in plan.channels:
        scan.add_channel(spec.name, spec.dtype, spec.shape, subscan=spec.subscan,
                         unit=spec.unit)
    writers = {}
    for lima in plan.limas:
        scan.add_lima(lima.name, directory=lima.directory, prefix=lima.prefix,
                      suffix=lima.suffix, file_format=lima.file_format,
                      frames_per_file=lima.frames_per_file,
                      first_file_number=lima.first_file_number,
                      path_in_file=lima.path_in_file, dtype=lima.dtype, shape=lima.shape,
                      subscan=lima.subscan, file_template=lima.file_template,
                      frames_per_acquisition=lima.frames_per_acquisition)
        writers[lima.name] = LimaFileWriter(lima)
    return writers


def _save_frames(scan: AnyScan, writers: dict[str, LimaFileWriter], block: Block,
                 record: ScanTruthWriter | None) -> None:
    """Acquired, then saved: two progress updates per block, as a detector reports them."""
    for name, frames in block.frames.items():
        writer = writers[name]
        acquired = block.start + len(frames) - 1
        scan.update_lima(name, acquired, writer.last_image_saved)
        writer.save(block.start, frames)
        if record is not None:
            record.add_frames(writer.spec, block.start, frames)
            record.lima_progress(name, acquired, writer.last_image_saved)
        scan.update_lima(name, acquired, writer.last_image_saved)


def publish_plan(
    publisher: AnyPublisher, plan: ScanPlan, *, count_time: float = 0.0, block_size: int = 1000,
    truth: TruthWriter | None = None, stop: StopEvent | None = None,
    on_created: Callable[[Any], Any] | None = None,
) -> PublishedScan:
    """Publish one scan, save its lima frames, record it in ``truth``; blocks until it ends.

    The scan ends with ``plan.end_reason``; with ABORTED if ``stop`` is set
    meanwhile; with FAILED (ABORTED for KeyboardInterrupt) if publishing raises,
    and the exception propagates. ``on_created`` is called with the scan once it is
    created (a sequence names it then).
    """
    started = time.monotonic()
    scan = publisher.create_scan(plan.info_at_creation(), name=plan.name, number=plan.number)
    if on_created is not None:
        on_created(scan)
    record = truth.add_scan(plan, scan.key, publisher.session) if truth is not None else None
    reason, message = plan.end_reason, plan.end_message
    published = 0
    try:
        with scan:
            writers = _declare(scan, plan)
            prepared = plan.info_at_prepared()
            if prepared:
                scan.update_info(prepared)
            scan.prepare()
            acquisition = time.monotonic()
            for block in plan.blocks(points_per_block(count_time, block_size)):
                _wait_until(acquisition + block.stop * count_time, stop)
                if stop is not None and stop.is_set():
                    reason, message = EndReason.ABORTED, f"stopped after {published} points"
                    break
                scan.send(block.channels)
                if record is not None:
                    record.append(block)
                _save_frames(scan, writers, block, record)
                published = block.stop
            if not scan.ended:
                ending = plan.info_at_end(reason, _now())
                scan.update_info(ending)
                if record is not None:
                    record.update_info(ending)
            scan.end(reason, message)
    except BaseException as exc:
        if record is not None:
            failed = EndReason.ABORTED if isinstance(exc, KeyboardInterrupt) else EndReason.FAILED
            record.end(failed, f"{type(exc).__name__}: {exc}", published)
        raise
    if record is not None:
        record.end(reason, message, published)
    lima_files = sorted({lima.filename(lima.file_number(i)) for lima in plan.limas
                         for i in range(published) if lima.index_in_file(i) == 0})
    return PublishedScan(plan.kind, plan.name, plan.number, scan.key, published, reason,
                         message, plan.filename, time.monotonic() - started,
                         tuple(lima_files))


def publish_sequence(
    publisher: AnyPublisher, kind: str, parameters: Callable[[], ScanParameters], *,
    count_time: float = 0.0, block_size: int = 1000, truth: TruthWriter | None = None,
    stop: StopEvent | None = None,
) -> list[PublishedScan]:
    """Publish the sequence ``kind`` (see :data:`~.scans.SEQUENCE_TYPES`) as BLISS runs
    one: the sequence starts, each of its scans is named by it as it starts and saved
    in the sequence's file, then the sequence ends. ``parameters()`` gives the
    parameters of the next scan (its number). Returns its scans, then the sequence."""
    started = time.monotonic()
    plan = build_sequence(kind, parameters())
    group = publisher.create_scan(plan.scan_info, name=plan.name, number=plan.number)
    published: list[PublishedScan] = []
    with group:
        group.add_scans(subscan="GroupingMaster")
        group.prepare()
        for child_kind in SEQUENCE_TYPES[kind].scans:
            if stop is not None and stop.is_set():
                break
            child = build_scan(child_kind, parameters())
            child.scan_info["filename"] = plan.filename  # one file, as a dataset's
            published.append(publish_plan(publisher, child, count_time=count_time,
                                          block_size=block_size, truth=truth, stop=stop,
                                          on_created=group.add_scan_reference))
    published.append(PublishedScan(kind, plan.name, plan.number, group.key, 0,
                                   EndReason.SUCCESS, "", plan.filename,
                                   time.monotonic() - started))
    return published


def _next_number(client: redis.Redis, session: str) -> int:
    """The number the session's next scan gets (the writer needs it in ``filename``)."""
    with redis_errors(f"reading the scan counter of session {session!r}"):
        current = client.get(SessionKeys(session).counter)
    return int(current or 0) + 1


def _now() -> str:
    """The local time with its UTC offset (ISO 8601), as BLISS gives start and end times."""
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat()


def _publisher(options: SimulationOptions, client: redis.Redis) -> Any:
    """The publisher ``options.data_source`` asks for (a context manager)."""
    if options.data_source == "blissdata":
        from .blissdata_publish import BlissdataPublisher

        return BlissdataPublisher(options.session, resolve_redis_url(options.redis_url))
    return Publisher(options.session, lease=options.lease, retention=options.retention,
                     reconnect_timeout=options.reconnect_timeout, client=client)


def simulate(
    options: SimulationOptions, *, on_published: Callable[[PublishedScan], None] | None = None,
    stop: StopEvent | None = None,
) -> list[PublishedScan]:
    """Publish ``options.repeat`` times each selected scan type; return what was published.

    Raises :class:`ConfigurationError` for invalid options, a missing Redis URL or,
    with ``data_source="blissdata"``, a missing blissdata package or server modules,
    and :class:`~nexus_writer_service.errors.RedisUnavailableError` when Redis
    cannot be reached, before anything is published.
    """
    options.validate()
    if options.data_source == "blissdata":
        from .blissdata_publish import require_blissdata

        require_blissdata()
    kinds = resolve_scan_names(options.scans)
    root = os.path.abspath(options.root or default_root())
    client = connect(options.redis_url)
    published: list[PublishedScan] = []
    try:
        with redis_errors("connecting to Redis"):
            client.ping()
        truth = TruthWriter(options.truth, options.session) if options.truth else None
        try:
            with _publisher(options, client) as publisher:
                number = (publisher.next_number if options.data_source == "blissdata"
                          else lambda: _next_number(client, options.session))
                for repeat in range(options.repeat):
                    for kind in kinds:
                        if stop is not None and stop.is_set():
                            return published

                        def params(repeat: int = repeat) -> ScanParameters:
                            return ScanParameters(
                                session=options.session, number=number(), root=root,
                                seed=options.seed, repeat=repeat, npoints=options.npoints,
                                count_time=options.count_time, nchannels=options.nchannels,
                                mca_detectors=options.mca_detectors,
                                start_time=_now(), lima_format=options.lima_format,
                                lima_frames_per_file=options.lima_frames_per_file,
                                lima_frames_per_acquisition=options.lima_frames_per_acquisition,
                                lima_first_file_number=options.lima_first_file_number,
                                master_files=options.master_files)
                        if kind in SEQUENCE_TYPES:
                            results = publish_sequence(
                                publisher, kind, params, count_time=options.count_time,
                                block_size=options.block_size, truth=truth, stop=stop)
                        else:
                            results = [publish_plan(publisher, build_scan(kind, params()),
                                                    count_time=options.count_time,
                                                    block_size=options.block_size,
                                                    truth=truth, stop=stop)]
                        for result in results:
                            logger.info("published %s", result.summary())
                            published.append(result)
                            if on_published is not None:
                                on_published(result)
        finally:
            if truth is not None:
                truth.close()
    finally:
        client.close()
    return published
