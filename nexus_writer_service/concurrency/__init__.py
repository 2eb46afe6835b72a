"""Primitives shared by threads and greenlets: one gevent hub per native thread.

Nothing here monkey-patches. Each primitive lives in its own module, whose opening
lines say which thread or hub owns what.
"""

from .async_result import AsyncResult
from .event import Event
from .hub_trigger import HubTrigger
from .launcher import Launcher
from .lock import Lock, RLock
from .queue import Queue
from .thread import Thread
from .thread_resource import ThreadResource

__all__ = [
    "AsyncResult",
    "Event",
    "HubTrigger",
    "Launcher",
    "Lock",
    "Queue",
    "RLock",
    "Thread",
    "ThreadResource",
]
