"""The exceptions raised by :mod:`channels`.

Every class derives from :class:`ChannelsError` and from the builtin exception a
caller would naturally catch (``TimeoutError``, ``ConnectionError``, ``TypeError``,
``ValueError``, ``RuntimeError``), so both ``except ChannelsError`` and
``except TimeoutError`` work.
"""

from __future__ import annotations

__all__ = [
    "ChannelsError",
    "ConfigurationError",
    "ChannelsConnectionError",
    "ChannelsTimeoutError",
    "ServerError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "EncodeError",
    "ValueTooLargeError",
    "DecodeError",
    "CallbackError",
    "ClosedError",
]


class ChannelsError(Exception):
    """Root of every error raised by the ``channels`` package."""


class ConfigurationError(ChannelsError, ValueError):
    """The configuration is missing or malformed (e.g. no Redis URL anywhere)."""


class ChannelsConnectionError(ChannelsError, ConnectionError):
    """Redis could not be reached, refused the credentials, or dropped the connection."""


class ChannelsTimeoutError(ChannelsError, TimeoutError):
    """A blocking operation did not finish within its timeout."""


class ServerError(ChannelsError, RuntimeError):
    """Redis answered with an error (a refused command, a missing permission, ...)."""


class InvalidArgumentError(ChannelsError, ValueError):
    """An argument has the right type but an unusable value (e.g. an empty name)."""


class InvalidTypeError(ChannelsError, TypeError):
    """An argument has the wrong type (e.g. a callback that is not callable)."""


class EncodeError(InvalidTypeError):
    """A value cannot be encoded by the codec in use."""


class ValueTooLargeError(ChannelsError, ValueError):
    """An encoded value is larger than the configured size limit."""


class DecodeError(ChannelsError, ValueError):
    """Bytes found in Redis cannot be decoded (corrupt, or a codec that is not allowed)."""


class CallbackError(ChannelsError, RuntimeError):
    """A callback did something it must not do, such as setting its own channel."""


class ClosedError(ChannelsError, RuntimeError):
    """The object was closed and cannot be used any more."""
