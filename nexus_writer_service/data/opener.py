"""Which scan source serves a session given by name: the one place that chooses.

The writers take a :class:`~.source.SessionSource`; given only a session name (the
Tango device's ``session`` property, the command line), they ask this module for
one. Today every session is read from our own Redis streams; a second source is
chosen here, without any change to the writers.
"""

from __future__ import annotations

from .reader import get_session_node
from .source import SessionSource

__all__ = ["open_session"]


def open_session(session: str, redis_url: str | None = None) -> SessionSource:
    """The source of ``session``: our Redis streams at ``redis_url`` (else
    ``REDIS_URL``, read now). Creating it does not connect yet."""
    return get_session_node(session, redis_url)
