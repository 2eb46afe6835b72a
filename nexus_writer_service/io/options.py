"""Save options of the NeXus writers (pure: no I/O, no h5py).

One frozen :class:`SaveOptions` travels from the command line (or, later, the Tango
device properties) to the layout planner and the HDF5 layer. :meth:`SaveOptions.from_mapping`
accepts the option names as users type them (``keepshape``, ``allowed_roots``, ...)
with string values, and says which option is wrong and why.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ConfigurationError

__all__ = ["SaveOptions", "COMPRESSIONS", "SCHEMES", "MAX_CHUNK_BYTES", "MAX_CHUNK_SPLIT",
           "MAX_COMPRESSION_LIMIT", "option_help", "scheme_name"]

#: Compression schemes of the datasets a writer creates: BLISS's names
#: (``writer_options.chunk_options.compression_scheme``), and ``zstd-bitshuffle``.
SCHEMES = ("none", "gzip", "byteshuffle", "gzip-byteshuffle", "bitshuffle",
           "lz4-bitshuffle", "zstd-bitshuffle")
#: Earlier names of schemes, still accepted.
_ALIASES = {"bitshuffle-lz4": "lz4-bitshuffle", "zstd": "zstd-bitshuffle"}
#: What the ``compression`` option accepts.
COMPRESSIONS = SCHEMES + tuple(_ALIASES)
#: The largest chunk, chunk split and compression limit, of a scan as of a session.
MAX_CHUNK_BYTES = 1 << 30
MAX_CHUNK_SPLIT = 1 << 20
MAX_COMPRESSION_LIMIT = 1 << 62
#: Other names of options: BLISS's (``chunk_options``).
_OPTION_ALIASES = {"chunk_nbytes": "chunk_bytes"}


def scheme_name(name: str) -> str | None:
    """The scheme ``name`` stands for (any case, earlier names too); None if unknown."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in SCHEMES else None


_HELP = {
    "keepshape": "reshape grid scans (amesh) to their grid in the plots",
    "multivalue_positioners": "static positioners get [start, end] instead of the start value",
    "disable_external_hdf5": "lima HDF5 frames as file references instead of a virtual dataset",
    "enable_external_nonhdf5": "lima EDF frames as an external-storage dataset over the EDF "
                               "files (absolute paths) instead of file references",
    "copy_non_external": "copy the lima frames that are not linked (virtual or external) "
                         "into the scan file instead of file references",
    "short_names": "measurement links use the shortest unique channel names",
    "strict_names": "NeXus-valid entry names (entry_1_1) instead of 1.1",
    "stack_mcas": "one NXdetector per MCA controller, its detectors stacked in each dataset",
    "allowed_roots": "directories files may be written in (comma separated; empty: anywhere)",
    "required_disk_space": "MiB that must stay free, else the scan goes FAULT",
    "recommended_disk_space": "MiB below which a warning is given",
    "chunk_bytes": "target size in bytes of the HDF5 chunks of data written (0: a scan's "
                   "writer_options say, else 1 MiB); BLISS's chunk_nbytes, a name also "
                   "accepted",
    "chunk_split": "a chunk holds at most 1/chunk_split of the points a scan expects (0: "
                   "a scan's writer_options say, else 4 for BLISS scans and 1 for others)",
    "compression_limit_nbytes": "datasets expected to take at most this many bytes are "
                                "not compressed (-1: a scan's writer_options say, else "
                                "1 MB for BLISS scans and 0 for others)",
    "compression": "compression of the data written: " + ", ".join(SCHEMES) + " (empty: "
                   "a scan's writer_options say, else BLISS scans get gzip-byteshuffle "
                   "above 1 MB and other scans none)",
    "compression_threads": "threads compressing whole chunks beside the thread writing "
                           "the files, shared by the scans of the session (0: HDF5 "
                           "compresses them itself, on that thread)",
    "flush_period": "seconds between making received data visible in the file",
    "lima_refresh_period": "seconds between refreshes of the lima virtual datasets",
    "purge_delay": "seconds a finished scan stays listed by the session writer",
    "disk_check_period": "seconds between free-space checks during a scan",
    "file_mode": "permissions of new scan files (octal), set exactly: the umask does not apply",
    "lock_retry_time": "seconds to retry opening a file locked by another process",
    "max_channels": "channels and lima detectors one scan may declare; a scan that "
                    "declares more goes FAULT (no real scan comes near the default)",
    "max_info_bytes": "bytes of JSON a scan's scan_info, or one channel's info, may take; "
                      "a scan over it goes FAULT",
    "max_dataset_bytes": "bytes one channel's dataset may take (points expected x point "
                         "size); a scan declaring more goes FAULT",
}


def _parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"save option {name} must be true or false, got {value!r}")


def _parse_roots(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.replace("\n", ",").split(",")
    return tuple(str(v).strip() for v in value if str(v).strip())


@dataclass(frozen=True)
class SaveOptions:
    """How scan files are laid out and written; every field has a safe default."""

    keepshape: bool = False
    multivalue_positioners: bool = False
    disable_external_hdf5: bool = False
    enable_external_nonhdf5: bool = False
    copy_non_external: bool = False
    short_names: bool = True
    strict_names: bool = False
    stack_mcas: bool = False
    allowed_roots: tuple[str, ...] = field(default_factory=tuple)
    required_disk_space: float = 200.0
    recommended_disk_space: float = 1000.0
    #: 0: not set (see :mod:`.chunking`)
    chunk_bytes: int = 0
    #: 0: not set (see :mod:`.chunking`)
    chunk_split: int = 0
    #: "": not set (see :mod:`.chunking`)
    compression: str = ""
    #: -1: not set (see :mod:`.chunking`)
    compression_limit_nbytes: int = -1
    compression_threads: int = 2
    flush_period: float = 0.1
    lima_refresh_period: float = 1.0
    purge_delay: float = 300.0
    disk_check_period: float = 5.0
    file_mode: int = 0o664
    lock_retry_time: float = 3.0
    max_channels: int = 10_000
    max_info_bytes: int = 16 << 20
    max_dataset_bytes: int = 1 << 44

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_roots", _parse_roots(self.allowed_roots))
        if self.compression:
            scheme = scheme_name(self.compression)
            if scheme is None:
                raise ConfigurationError(
                    f"save option compression must be one of {', '.join(SCHEMES)} (or "
                    f"empty: as each scan says), got {self.compression!r}")
            object.__setattr__(self, "compression", scheme)
        if self.chunk_bytes and not 64 <= self.chunk_bytes <= MAX_CHUNK_BYTES:
            raise ConfigurationError(
                f"save option chunk_bytes must be 0 (as each scan says) or between 64 and "
                f"2**30, got {self.chunk_bytes}")
        if self.chunk_split and not 1 <= self.chunk_split <= MAX_CHUNK_SPLIT:
            raise ConfigurationError(
                f"save option chunk_split must be 0 (as each scan says) or between 1 and "
                f"2**20, got {self.chunk_split}")
        if not -1 <= self.compression_limit_nbytes <= MAX_COMPRESSION_LIMIT:
            raise ConfigurationError(
                f"save option compression_limit_nbytes must be -1 (as each scan says) or "
                f"bytes between 0 and 2**62, got {self.compression_limit_nbytes}")
        for name in ("flush_period", "lima_refresh_period", "disk_check_period"):
            if not 0 < getattr(self, name) < 3600:
                raise ConfigurationError(
                    f"save option {name} must be > 0 and < 3600 seconds, "
                    f"got {getattr(self, name)!r}")
        for name in ("purge_delay", "required_disk_space", "recommended_disk_space",
                     "lock_retry_time"):
            if not getattr(self, name) >= 0:
                raise ConfigurationError(
                    f"save option {name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.compression_threads <= 64:
            raise ConfigurationError(
                f"save option compression_threads must be between 0 and 64, "
                f"got {self.compression_threads!r}")
        for name in ("max_channels", "max_info_bytes", "max_dataset_bytes"):
            if not getattr(self, name) >= 1:
                raise ConfigurationError(
                    f"save option {name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 <= self.file_mode <= 0o777:
            raise ConfigurationError(
                f"save option file_mode must be between 0o000 and 0o777, got {self.file_mode:o}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "SaveOptions":
        """Options from ``{name: value}``; values may be strings (command line, Tango).

        :raises ConfigurationError: an unknown option name or a value of the wrong kind
        """
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        parsed: dict[str, Any] = {}
        named: dict[str, str] = {}
        for name, value in values.items():
            key = name.strip().lower().replace("-", "_")
            key = _OPTION_ALIASES.get(key, key)
            if key in named:
                raise ConfigurationError(
                    f"save option {key} is given twice, as {named[key]!r} and {name!r} "
                    "(the same option): give it once")
            named[key] = name
            kind = kinds.get(key)
            if kind is None:
                raise ConfigurationError(
                    f"unknown save option {name!r}; known: "
                    f"{', '.join(sorted(list(kinds) + list(_OPTION_ALIASES)))}")
            try:
                if kind == "bool":
                    parsed[key] = _parse_bool(value, key)
                elif kind == "int" and key == "file_mode" and isinstance(value, str):
                    parsed[key] = int(value, 8)
                elif kind == "int":
                    parsed[key] = int(value)
                elif kind == "float":
                    parsed[key] = float(value)
                elif key == "allowed_roots":
                    parsed[key] = _parse_roots(value)
                else:
                    parsed[key] = str(value).strip().lower()
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"save option {key} must be a {kind}, got {value!r}") from None
        return cls(**parsed)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for logs, device attributes and the file's writer note)."""
        values = dataclasses.asdict(self)
        values["allowed_roots"] = list(self.allowed_roots)
        return values


def option_help() -> dict[str, str]:
    """One line of help per option, for the command line."""
    return dict(_HELP)
