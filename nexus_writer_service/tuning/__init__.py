"""Settings of a whole writer process, made by its entry points only (the
``NexusSessionWriter`` command and the Tango device server), never by an import:
one malloc arena for its threads and fixed malloc thresholds, a short interpreter
switch interval, bounded HDF5 free lists (with :func:`release_memory` after a scan of
many channels), the start-up's objects left out of garbage collections, and, in the
Tango device server, a lower priority for the background threads. Each module says
why, and what it measured."""

from .arenas import (MMAP_THRESHOLD, TRIM_THRESHOLD, use_malloc_thresholds,
                     use_one_malloc_arena)
from .collector import freeze_startup_objects
from .memory import HDF5_FREE_LIST_LIMITS, limit_hdf5_free_lists, release_memory
from .priority import BACKGROUND_NICE, lower_this_thread, use_background_nice
from .switching import WRITER_SWITCH_INTERVAL, use_switch_interval

__all__ = ["use_one_malloc_arena", "use_malloc_thresholds", "MMAP_THRESHOLD",
           "TRIM_THRESHOLD", "use_switch_interval", "WRITER_SWITCH_INTERVAL",
           "limit_hdf5_free_lists", "release_memory", "HDF5_FREE_LIST_LIMITS",
           "use_background_nice", "lower_this_thread", "BACKGROUND_NICE",
           "freeze_startup_objects", "use_writer_settings"]


def use_writer_settings() -> None:
    """The settings every writer process makes before its writer starts (the entry
    points freeze their start-up's objects apart, each at its own time: see
    :mod:`.collector`)."""
    use_switch_interval()  # the reader and HDF5 threads pass the GIL often
    use_one_malloc_arena()  # and pass each other pages of memory
    use_malloc_thresholds()  # and keep the blocks of a few MiB they free
    limit_hdf5_free_lists()  # and give back what a big scan needed
