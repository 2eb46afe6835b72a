"""The exception hierarchy of ``nexus_writer_service``.

Every error raised on purpose by this package derives from
:class:`NexusWriterError` and from the builtin that describes it best, so callers
can catch either ``except NexusWriterError`` or ``except ValueError``.
Messages say what happened, to what, and what to do about it.
"""

from __future__ import annotations

import queue


class NexusWriterError(Exception):
    """Root of all errors raised by ``nexus_writer_service``."""


class ConfigurationError(NexusWriterError, ValueError):
    """A setting (URL, option, argument) is missing or invalid."""


class MalformedEventError(NexusWriterError, ValueError):
    """Content read from Redis does not follow the scan data model."""


class MalformedInfoError(MalformedEventError):
    """A scan_info key the writer uses does not have the shape BLISS gives it."""


class ForeignKeyError(NexusWriterError, TypeError):
    """A Redis key exists but does not hold what the data model expects."""


class NodeNotFoundError(NexusWriterError, LookupError):
    """A session, scan or node does not exist (or has expired) in Redis."""


class DataLostError(NexusWriterError, LookupError):
    """Data a reader still needed is no longer in Redis (trimmed or expired)."""


class PointsLostError(DataLostError):
    """Points a publisher accepted could not be stored in Redis; ``lost`` names them
    (channel and point range) and the message says why."""

    def __init__(self, message: str, lost: "list[tuple[str, int, int]] | None" = None):
        super().__init__(message)
        #: ``(channel, first point, point after the last)`` of every range lost
        self.lost = list(lost or [])


class ScanStateError(NexusWriterError, RuntimeError):
    """An operation is not allowed in the current state of a scan."""


class EventTimeout(NexusWriterError, TimeoutError):
    """No event arrived within the time the caller allowed."""


class RedisUnavailableError(NexusWriterError, ConnectionError):
    """The Redis server cannot be reached."""


class RedisCommandError(NexusWriterError, RuntimeError):
    """Redis refused a command (out of memory, read-only replica, ...)."""


class EmbeddedServerError(NexusWriterError, RuntimeError):
    """An embedded server (Redis or Tango database) failed to start or stop."""


class ArgumentTypeError(NexusWriterError, TypeError):
    """An argument has the wrong type (for example a timeout that is not a number)."""


class WaitTimeout(NexusWriterError, TimeoutError):
    """A blocking call did not complete within the time the caller allowed."""


class QueueEmpty(WaitTimeout, queue.Empty):
    """A queue had no item to give within the time the caller allowed.

    Also derives from :class:`queue.Empty`, so code written for the standard
    library queue keeps working.
    """


class ConcurrencyUsageError(NexusWriterError, RuntimeError):
    """A concurrency primitive was used in a way its contract forbids."""


class LockNotOwnedError(ConcurrencyUsageError):
    """A lock was released by a greenlet that does not hold it."""


class ThreadStoppedError(NexusWriterError, RuntimeError):
    """Work was sent to a thread (or launcher) that stopped before running it."""


class SubscriberStateError(NexusWriterError, RuntimeError):
    """A subscriber was asked for a state change its transition table forbids."""


class WriterStatusError(ScanStateError):
    """A scan file's writer status was asked for a change its transition table forbids."""


class PathNotAllowedError(NexusWriterError, PermissionError):
    """A path is outside the allowed roots, or this process may not write there."""


class DiskSpaceError(NexusWriterError, OSError):
    """Free disk space is below the required threshold."""


class FileLockedError(NexusWriterError, BlockingIOError):
    """A file is locked by another process."""


class EntryExistsError(NexusWriterError, FileExistsError):
    """A file already holds an entry of the same name written for another scan."""


class FileFinishedError(EntryExistsError):
    """A file's entries say their writer finished them (SUCCEEDED or FAILED): a
    finished file is never written again. ``status`` is what they say."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class SessionTakenError(NexusWriterError, RuntimeError):
    """Another writer holds the session's writer lease (one writer per session)."""
