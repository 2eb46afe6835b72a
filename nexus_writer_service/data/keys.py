"""Names of the Redis keys of the scan data model (pure).

Everything of a session lives under ``nws:<session>:``; a scan under
``nws:<session>:scan:<id>`` where ``id`` is a per-session counter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = ["check_name", "SessionKeys", "ScanKeys"]

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def check_name(name: object, what: str = "session name") -> str:
    """Return ``name`` if it is a valid session name, else a clear error."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {type(name).__name__}")
    if not _NAME.match(name):
        raise ConfigurationError(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '_', '-' or '.'"
        )
    return name


@dataclass(frozen=True)
class SessionKeys:
    session: str

    @property
    def prefix(self) -> str:
        return f"nws:{self.session}"

    @property
    def stream(self) -> str:
        return f"{self.prefix}:scans"

    @property
    def counter(self) -> str:
        return f"{self.prefix}:scan_counter"

    @property
    def readers(self) -> str:
        return f"{self.prefix}:readers"

    def scan(self, scan_id: int) -> "ScanKeys":
        return ScanKeys(f"{self.prefix}:scan:{scan_id}")


@dataclass(frozen=True)
class ScanKeys:
    base: str

    @property
    def info(self) -> str:
        return self.base

    @property
    def events(self) -> str:
        return f"{self.base}:events"

    @property
    def nodes(self) -> str:
        return f"{self.base}:nodes"

    @property
    def lease(self) -> str:
        return f"{self.base}:lease"

    @property
    def acks(self) -> str:
        return f"{self.base}:acks"

    def all(self) -> list[str]:
        return [self.info, self.events, self.nodes, self.lease, self.acks]

    @property
    def session(self) -> str:
        parts = self.base.split(":")
        if len(parts) != 4 or parts[0] != "nws" or parts[2] != "scan":
            raise ConfigurationError(f"{self.base!r} is not a scan key (nws:<session>:scan:<id>)")
        return parts[1]
