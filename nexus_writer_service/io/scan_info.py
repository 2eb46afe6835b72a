"""What the writer reads from the keys BLISS puts in a scan's ``scan_info`` (pure).

Each function reads one key, as BLISS publishes it, and gives what the writer needs.
A key that is absent gives the default; a key that is there with another shape raises
:class:`~nexus_writer_service.errors.MalformedInfoError` naming the key, so that the
scan goes FAULT with a reason the acquisition program's author can act on.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import MalformedInfoError

__all__ = ["WRITTEN_BY", "skip_reason"]

#: The ``data_writer`` of the scans this writer writes.
WRITTEN_BY = "nexus"


def _malformed(key: str, value: Any, expected: str) -> MalformedInfoError:
    return MalformedInfoError(
        f"scan_info {key!r} is {value!r} ({type(value).__name__}), not {expected}: the "
        "acquisition program sent a malformed scan_info")


def skip_reason(info: Mapping[str, Any]) -> str:
    """Why the scan is not to be written by this writer ("" when it is).

    BLISS names the writer that saves a scan in ``data_writer``: only ``"nexus"``
    scans are ours. A scan without the key (published by other programs than BLISS)
    is written.
    """
    data_writer = info.get("data_writer")
    if data_writer is None or data_writer == WRITTEN_BY:
        return ""
    if not isinstance(data_writer, str):
        raise _malformed("data_writer", data_writer, "a writer name")
    return (f"skipped: scan_info data_writer={data_writer!r}, not {WRITTEN_BY!r}; "
            "no file written")
