"""Scan data in Redis: the event model, the publisher and the reader.

Readers use :func:`get_session_node` and the walks; acquisition programs use
:class:`Publisher`. Everything travels in Redis streams, as JSON and raw numpy bytes.
"""

from .connection import connect, resolve_redis_url
from .events import EndReason, EventData, EventType, LimaProgress, NodeType
from .nodes import ChannelNode, ImageReference, LimaNode, Node, SubscanNode
from .publisher import Publisher, ScanPublisher
from .reader import ScanNode, SessionNode, StopHandle, get_scan_node, get_session_node

__all__ = [
    "connect",
    "resolve_redis_url",
    "EndReason",
    "EventData",
    "EventType",
    "LimaProgress",
    "NodeType",
    "ChannelNode",
    "ImageReference",
    "LimaNode",
    "Node",
    "SubscanNode",
    "StopHandle",
    "Publisher",
    "ScanPublisher",
    "ScanNode",
    "SessionNode",
    "get_scan_node",
    "get_session_node",
]
