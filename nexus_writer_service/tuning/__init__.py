"""Settings of a whole writer process, made by its entry points only (the
``NexusSessionWriter`` command and the Tango device server), never by an import:
one malloc arena for its threads, and a short interpreter switch interval. Each
module says why, and what it measured."""

from .arenas import use_one_malloc_arena
from .switching import WRITER_SWITCH_INTERVAL, use_switch_interval

__all__ = ["use_one_malloc_arena", "use_switch_interval", "WRITER_SWITCH_INTERVAL"]
