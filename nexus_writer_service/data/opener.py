"""Which scan source serves a session given by name: the one place that chooses.

The writers take a :class:`~.source.SessionSource`; given only a session name (the
Tango device's ``session`` property, the command line), they ask this module for
one. Two sources read Redis: our own streams (``nws``) and blissdata 2.x, the data
layer of BLISS 2.x (``blissdata``, :mod:`.blissdata_source`). ``auto`` looks at what
the Redis holds: the session's own stream of ours, else a database set up for
blissdata, else ours (nothing is there yet); the choice is logged.
"""

from __future__ import annotations

import logging

from ..errors import ConfigurationError, RedisUnavailableError
from .connection import Client, connect, redis_errors
from .keys import SessionKeys, check_name
from .reader import get_session_node
from .source import SessionSource

__all__ = ["open_session", "choose_data_source", "check_data_source", "check_idle_timeout",
           "import_sources", "DATA_SOURCES"]

logger = logging.getLogger(__name__)

#: The values of ``data_source`` (``--data-source``, the device property).
DATA_SOURCES = ("auto", "nws", "blissdata")
#: The keys that tell a Redis set up for blissdata (see :mod:`.blissdata_source`).
_BLISSDATA_KEYS = ("_PROTOCOL_VERSION_", "_SCAN_HISTORY_")


def check_data_source(data_source: str) -> str:
    """``data_source`` as one of :data:`DATA_SOURCES` (empty: ``auto``).

    :raises ConfigurationError: it is none of them"""
    value = (data_source or "auto").strip().lower()
    if value not in DATA_SOURCES:
        raise ConfigurationError(
            f"unknown data source {data_source!r}: use one of {', '.join(DATA_SOURCES)}")
    return value


def check_idle_timeout(seconds: object) -> float:
    """``seconds`` as the idle timeout of the blissdata source (a positive, finite number).

    :raises ConfigurationError: it is not one"""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not 0 < seconds < float("inf"):
        raise ConfigurationError(
            f"idle_timeout must be a positive number of seconds, got {seconds!r}")
    return float(seconds)


def choose_data_source(session: str, client: Client) -> tuple[str, str]:
    """``(source, why)`` for ``session`` from what the Redis of ``client`` holds."""
    with redis_errors("looking for the data source"):
        ours = bool(client.exists(SessionKeys(check_name(session)).stream))
        blissdata = bool(client.exists(*_BLISSDATA_KEYS))
    if ours:
        return "nws", f"the Redis holds our scan streams of session {session!r}"
    if blissdata:
        return "blissdata", "the Redis is set up for blissdata (BLISS 2.x)"
    return "nws", "the Redis holds neither source yet"


def import_sources() -> tuple[str, ...]:
    """Import now the modules of every data source installed (blissdata's only when
    it is), which :func:`open_session` imports when first asked; the sources that
    can be opened. For a process that completes its start-up before opening any."""
    try:
        from . import blissdata_source  # noqa: F401
    except ImportError:
        return ("nws",)
    return ("nws", "blissdata")


def open_session(session: str, redis_url: str | None = None,
                 data_source: str = "auto", *,
                 blissdata_idle_timeout: float | None = None) -> SessionSource:
    """The source of ``session`` at ``redis_url`` (else ``REDIS_URL``, read now):
    ``data_source`` is one of :data:`DATA_SOURCES`. Only ``auto`` connects here (to
    look); the sources connect when first used.

    ``blissdata_idle_timeout``: for blissdata, which has no publisher lease, the seconds
    without data after which a scan never closed ends ``PUBLISHER_LOST`` (None: its
    default); our own streams have a lease and ignore it.

    ``auto`` looks once, without retries, so that a writer is not held up: a Redis it
    cannot reach chooses ours (as before there was a choice), and the log says so.

    :raises ConfigurationError: unknown ``data_source``, or blissdata not installed
    """
    source = check_data_source(data_source)
    if source == "auto":
        client = connect(redis_url, once=True)
        try:
            source, why = choose_data_source(session, client)
        except RedisUnavailableError as exc:
            # the writer reports the Redis when it starts
            source, why = "nws", f"cannot look ({exc}); set data_source to choose"
            logger.warning("session %s: data source %s: %s", session, source, why)
        else:
            logger.info("session %s: data source %s: %s", session, source, why)
        finally:
            client.close()
    if source == "nws":
        return get_session_node(session, redis_url)
    try:
        from .blissdata_source import BlissdataSession
    except ImportError as exc:
        raise ConfigurationError(
            f"the blissdata data source needs the blissdata package ({exc}): "
            "pip install 'nexus-writer-service[blissdata]'") from None
    if blissdata_idle_timeout is None:
        return BlissdataSession(session, redis_url)
    return BlissdataSession(session, redis_url, idle_timeout=blissdata_idle_timeout)
