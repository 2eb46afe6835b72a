"""Announce a writer's state and its scans through ``channels``, off the device's hub.

For clients that do not speak Tango: a :func:`channels.Cache` ``<device>:state``
holds ``{"state", "status", "running"}`` (cleared by ``channels`` when the server
goes, even by a crash), and an :class:`channels.EventChannel` ``<device>:scans``
receives ``{"event": "scan_started" | "scan_finished", "scan", "urls", ...}``.

Every Redis call happens in one daemon thread fed by a queue, so a slow or dead
Redis never blocks the device; failures are logged once per kind and dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
from types import SimpleNamespace
from typing import Any, Iterator, Optional

import channels
from nexus_writer_service.subscribers import ScanRecord, SubscriberState

__all__ = ["Announcer", "ScanAnnouncements"]

logger = logging.getLogger(__name__)

_STOP = object()


class Announcer:
    """``Announcer(device_name, redis_url)``: ``state(dict)``, ``post(dict)``, ``close()``."""

    def __init__(self, device_name: str, redis_url: Optional[str]) -> None:
        self.device_name = device_name
        self.state_channel = f"{device_name}:state"
        self.events_channel = f"{device_name}:scans"
        self._redis_url = redis_url
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=10000)
        self._failed: set[str] = set()
        self._thread = threading.Thread(target=self._run, name=f"announce-{device_name}",
                                        daemon=True)
        self._thread.start()

    def state(self, value: dict[str, Any]) -> None:
        self._put(("state", value))

    def post(self, event: dict[str, Any]) -> None:
        self._put(("post", event))

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _put(self, item: tuple[str, Any]) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._warn_once("full", "announcement queue full: Redis too slow; dropping")

    def _warn_once(self, kind: str, message: str, *args: Any) -> None:
        if kind not in self._failed:
            self._failed.add(kind)
            logger.warning("%s: " + message, self.device_name, *args)

    def _run(self) -> None:
        cache: Optional[channels.Channel] = None
        events: Optional[channels.EventChannel] = None
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                kind, value = item
                try:
                    if kind == "state":
                        if cache is None:
                            cache = channels.Cache(SimpleNamespace(name=self.device_name),
                                                   "state", redis_url=self._redis_url)
                        cache.value = value
                    else:
                        if events is None:
                            events = channels.EventChannel(self.events_channel,
                                                           redis_url=self._redis_url)
                        events.post(value)
                    self._failed.discard(kind)
                except Exception as exc:  # announcements must never harm the writer
                    self._warn_once(kind, "cannot announce through channels (%s): %s",
                                    type(exc).__name__, exc)
        finally:
            for channel in (cache, events):
                if channel is not None:
                    try:
                        channel.close()
                    except Exception:  # closing on the way out: nothing left to protect
                        logger.debug("closing %s", channel, exc_info=True)


_FINISHED = frozenset({SubscriberState.OFF, SubscriberState.FAULT})


class ScanAnnouncements:
    """Which scan events are news: ``scan_started`` once a scan's file is known (or it
    finished without one), ``scan_finished`` once it is OFF or FAULT. Owned by one
    greenlet (the device's monitor)."""

    def __init__(self) -> None:
        self._announced: dict[str, SubscriberState] = {}

    def events(self, records: list[ScanRecord], session: str) -> Iterator[dict[str, Any]]:
        """The events not announced yet for ``records`` (the scans still listed)."""
        for record in records:
            previous = self._announced.get(record.key)
            state = record.state
            if previous is state:
                continue
            finished = state in _FINISHED
            if previous is None:
                urls = record.writer.urls
                if not urls and not finished:
                    continue  # announced once its file is known
                yield {"event": "scan_started", "scan": record.name, "session": session,
                       "urls": urls}
            if finished and previous not in _FINISHED:
                info = record.as_dict()
                yield {"event": "scan_finished", "scan": record.name, "session": session,
                       "urls": info["urls"], "state": state.value,
                       "reason": info["state_reason"], "end_reason": info["end_reason"],
                       "points": info["points"]}
            self._announced[record.key] = state
        listed = {record.key for record in records}
        for key in set(self._announced) - listed:
            del self._announced[key]
