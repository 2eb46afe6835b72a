"""A FIFO queue between producers and consumers in any threads and greenlets.

Ownership: nobody owns a :class:`Queue`. A consumer that finds it empty parks in
its own hub; ``put`` hands the item directly to the oldest parked consumer and
wakes it in its own hub (through a libev ``async`` watcher of that consumer's
loop). The internal ``threading.Lock`` guards the items and the waiting consumers
and is never held while waiting.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Deque, Generic, Optional, TypeVar

from ..errors import ConcurrencyUsageError, QueueEmpty
from ._timeouts import check_timeout
from ._wakeup import Wakeup

T = TypeVar("T")


class Queue(Generic[T]):
    """An unbounded first-in first-out queue, thread-safe and greenlet-safe.

    Guarantees: every item put is got exactly once; items from one producer come
    out in the order they were put; consumers that wait are served in the order
    they started waiting. ``put`` never blocks.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._items: Deque[T] = deque()
        self._getters: Deque[Wakeup] = deque()

    def put(self, item: T) -> None:
        """Append ``item``. Never blocks; any thread or greenlet."""
        with self._mutex:
            self._give(item, front=False)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> T:
        """Remove and return the oldest item.

        Blocks only the calling greenlet, at most ``timeout`` seconds (``None``:
        no limit); ``block=False`` never waits and takes no timeout.

        :raises QueueEmpty: no item arrived in time (also a ``TimeoutError`` and a
            ``queue.Empty``)
        """
        seconds = check_timeout(timeout)
        if not block and seconds is not None:
            raise ConcurrencyUsageError("a non-blocking get cannot have a timeout")
        with self._mutex:
            if self._items:
                return self._items.popleft()
            if not block or seconds == 0:
                raise QueueEmpty("the queue is empty")
            wakeup = Wakeup()
            self._getters.append(wakeup)
        try:
            wakeup.wait(seconds)
        except BaseException:
            # Interrupted while waiting: an item handed over meanwhile goes back
            # to the front, so it is neither lost nor reordered.
            with self._mutex:
                if wakeup.payload is None:
                    self._getters.remove(wakeup)
                else:
                    self._give(wakeup.payload[0], front=True)
            raise
        with self._mutex:
            if wakeup.payload is not None:
                item: T = wakeup.payload[0]
                return item
            self._getters.remove(wakeup)
        raise QueueEmpty(f"no item arrived in the queue within {seconds} s")

    def get_nowait(self) -> T:
        """``get(block=False)``."""
        return self.get(block=False)

    def qsize(self) -> int:
        """Number of items waiting to be got (a snapshot)."""
        return len(self._items)

    def empty(self) -> bool:
        """Whether no item is waiting to be got (a snapshot)."""
        return not self._items

    def __len__(self) -> int:
        return len(self._items)

    def _give(self, item: T, front: bool) -> None:
        # Caller holds the mutex. Invariant: consumers wait only while no item does.
        if self._getters:
            wakeup = self._getters.popleft()
            wakeup.payload = (item,)
            wakeup.wake()
        elif front:
            self._items.appendleft(item)
        else:
            self._items.append(item)

    def __repr__(self) -> str:
        return f"<Queue items={len(self._items)} waiting={len(self._getters)}>"
