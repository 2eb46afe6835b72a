"""Small values and events shared between processes through Redis.

See :class:`Channel`, :func:`Cache`, :func:`clear_cache`, :class:`EventChannel`, and
:mod:`channels.sync.client` for one-shot reads, writes and monitors.
"""

from .callbacks import GeventHubExecutor
from .channel import DEFAULT_LEASE, Cache, Channel, clear_cache
from .codec import Codec
from .connection import DEFAULT_TIMEOUT
from .events import EventChannel
from .link import shutdown

__all__ = [
    "Channel",
    "Cache",
    "clear_cache",
    "EventChannel",
    "Codec",
    "GeventHubExecutor",
    "DEFAULT_LEASE",
    "DEFAULT_TIMEOUT",
    "shutdown",
]
