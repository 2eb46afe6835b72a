"""Subscribers: listen to the events of a scan source and process them.

:class:`Subscriber` is the base class of the writers; its states and modes live in
:mod:`.states`.
"""

from .states import TRANSITIONS, SubscriberMode, SubscriberState, check_transition
from .scan_writer import NexusScanWriter, WriterStatus
from .session_writer import NexusSessionWriter, ScanRecord
from .subscriber import Subscriber, SubscriberEvent

__all__ = [
    "TRANSITIONS",
    "NexusScanWriter",
    "NexusSessionWriter",
    "ScanRecord",
    "WriterStatus",
    "Subscriber",
    "SubscriberEvent",
    "SubscriberMode",
    "SubscriberState",
    "check_transition",
]
