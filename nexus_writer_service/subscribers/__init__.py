"""Subscribers: listen to the events of a scan source and process them.

:class:`Subscriber` is the base class of the writers; its states and modes live in
:mod:`.states`, and the writer status of a scan file in :mod:`.file_status`.
"""

from .states import TRANSITIONS, SubscriberMode, SubscriberState, check_transition
from .file_status import STATUS_TRANSITIONS, WriterStatus, check_status_transition
from .scan_writer import NexusScanWriter
from .session_writer import NexusSessionWriter, ScanRecord
from .subscriber import Subscriber, SubscriberEvent

__all__ = [
    "STATUS_TRANSITIONS",
    "TRANSITIONS",
    "NexusScanWriter",
    "NexusSessionWriter",
    "ScanRecord",
    "WriterStatus",
    "Subscriber",
    "SubscriberEvent",
    "SubscriberMode",
    "SubscriberState",
    "check_status_transition",
    "check_transition",
]
