"""Scan data: the event model, the scan-source protocol and its sources.

Writers read scans through the protocol of :mod:`.source` (:class:`ScanSource`,
:class:`SessionSource`). Our Redis streams are one source: readers use
:func:`get_session_node` and the walks, acquisition programs :class:`Publisher`;
everything travels in Redis streams, as JSON and raw numpy bytes. :mod:`.memory`
is another source, in one process, without a server.
"""

from .connection import connect, resolve_redis_url
from .events import EndReason, EventData, EventType, LimaProgress, NodeType, ScanReference
from .memory import MemoryScan, MemorySession
from .nodes import ChannelNode, ImageReference, LimaNode, Node, ScansNode, SubscanNode
from .publisher import Publisher, ScanPublisher
from .reader import ScanNode, SessionNode, get_scan_node, get_session_node
from .source import ScanSource, SessionSource, StopHandle

__all__ = [
    "connect",
    "resolve_redis_url",
    "EndReason",
    "EventData",
    "EventType",
    "LimaProgress",
    "ScanReference",
    "NodeType",
    "ChannelNode",
    "ImageReference",
    "LimaNode",
    "ScansNode",
    "Node",
    "SubscanNode",
    "StopHandle",
    "ScanSource",
    "SessionSource",
    "MemoryScan",
    "MemorySession",
    "Publisher",
    "ScanPublisher",
    "ScanNode",
    "SessionNode",
    "get_scan_node",
    "get_session_node",
]
