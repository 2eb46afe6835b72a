"""How a publisher's stream connection recovers from a drop (the
:class:`~nexus_writer_service.data._fast_redis.RecoveryHandler` of
:class:`~nexus_writer_service.data.publisher.Publisher`).

It runs in the thread whose call met the drop, with the stream connection locked:
no other data entry goes out meanwhile. It waits for Redis (at most the publisher's
``reconnect_timeout``), finds out per scan which unanswered entries Redis stored
(see :mod:`.losses`), and returns the others to be sent again; points that cannot
be (Redis did not come back, came back without the scan, refused them, or the scan
was ended meanwhile) are recorded on their scan, which names them to the caller and
in its end message.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import redis

from ._fast_redis import CONNECTION_ERRORS, Unanswered
from .events import iter_wire_blocks
from .losses import lost_ranges, signature, stored_count

if TYPE_CHECKING:
    from .publisher import Publisher, ScanPublisher

__all__ = ["Recovery"]

logger = logging.getLogger(__name__)


class Recovery:
    """How the publisher's stream connection recovers from a drop (see
    :class:`~nexus_writer_service.data._fast_redis.RecoveryHandler`): wait for Redis,
    find out per scan which unanswered entries were stored, send the others again or
    name their points as lost."""

    def __init__(self, publisher: "Publisher"):
        self._publisher = publisher

    def recover(self, unanswered: list[Unanswered], cause: Exception, since: float
                ) -> list[Unanswered]:
        publisher = self._publisher
        deadline = since + publisher.reconnect_timeout
        logger.warning("session %s: connection to Redis lost with %d data entries unanswered "
                       "(%s); reconnecting", publisher.session, len(unanswered), cause)
        delay = 0.02
        while True:
            try:
                publisher._client.ping()
                resend = self._resolve(unanswered)
            except CONNECTION_ERRORS as exc:
                cause = exc
                if time.monotonic() + delay > deadline:
                    break
                time.sleep(delay)
                delay = min(2 * delay, 0.5)
                continue
            logger.warning("session %s: reconnected to Redis; %d data entries sent again",
                           publisher.session, len(resend))
            return resend
        why = (f"Redis could not be reached for {time.monotonic() - since:.1f} s "
               f"(reconnect_timeout {publisher.reconnect_timeout:g} s): {cause}")
        for scan, items in _by_scan(unanswered).items():
            self._lose(scan, items, why)
        return []

    def _resolve(self, unanswered: list[Unanswered]) -> list[Unanswered]:
        resend = []
        for scan, items in _by_scan(unanswered).items():
            uid, end_reason, tail = self._look(scan)
            if uid != scan.uid.encode():
                self._lose(scan, items, "Redis came back without the scan")
                continue
            stored = stored_count([item.token for item in items], _last_data(tail))
            if end_reason is not None:
                self._lose(scan, items[stored:],
                           f"the scan was ended {end_reason.decode()} meanwhile")
            else:
                resend.extend(items[stored:])
        return resend

    def _look(self, scan: "ScanPublisher") -> tuple[Any, Any, list[Any]]:
        pipe = self._publisher._client.pipeline(transaction=False)
        pipe.hmget(scan.keys.info, ["uid", "end_reason"])
        # the stored entries of a scan are never trimmed from its end (readers
        # acknowledge entries they read), and after them only an END can come
        pipe.xrevrange(scan.keys.events, count=4)
        (uid, end_reason), tail = pipe.execute()
        return uid, end_reason, tail

    def _lose(self, scan: "ScanPublisher", items: list[Unanswered], why: str) -> None:
        if not items:
            return
        names = {channel.index: channel.name for channel in scan._channels.values()}
        ranges = lost_ranges([item.token for item in items], names)
        scan._record_loss(ranges, why)
        logger.error("session %s: scan %s: %s", self._publisher.session, scan.key,
                     scan._loss_message())

    def refused(self, token: Any, error: redis.ResponseError) -> None:
        scan: "ScanPublisher" = token.scan
        self._lose(scan, [Unanswered(token, ())], f"Redis refused them: {error}")


def _by_scan(unanswered: list[Unanswered]) -> "dict[ScanPublisher, list[Unanswered]]":
    """The unanswered entries of each scan, in the order sent."""
    found: "dict[ScanPublisher, list[Unanswered]]" = defaultdict(list)
    for item in unanswered:
        found[item.token.scan].append(item)
    return found


def _last_data(tail: list[tuple[bytes, dict[bytes, bytes]]]
               ) -> tuple[tuple[int, int, int], ...] | None:
    """The signature of the newest data entry of ``tail`` (newest first), ``None``
    when another kind of entry (other than END) comes first."""
    for _, fields in tail:
        kind = fields.get(b"t")
        if kind == b"end":
            continue
        if kind != b"data":
            return None
        return signature(iter_wire_blocks(fields))
    return None
