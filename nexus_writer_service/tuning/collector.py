"""The garbage collector of a writer process: the objects made at start-up are left
out of its collections.

A full collection (CPython's generation 2) visits every object the collector tracks.
In a writer most of them are the start-up's: the modules imported (numpy, h5py,
redis-py, blissdata with its pydantic models, pytango) and the writer set up, some
80,000 objects that are never garbage. CPython starts a full collection once enough
objects have outlived the younger generations, and a reader makes many: hiredis
gives every stream entry as two lists and five byte strings, alive until the reply
is decoded. Scalars published in blocks of 100 (10 channels of 1e6 points: 100,000
entries) started two full collections per scan, about 50 ms each: a tenth of the
writer's CPU time for the scan (0.66 against 0.81 CPU s in two runs of
``tests.benchmarks.bench_blisswriter``'s scalars). Frozen (``gc.freeze``), the
start-up's objects are ignored by every later collection: the full collection of the
same scan took 0.6 ms. What is made later (scan writers, files) is collected as
before.

An object frozen is never collected, even once it is garbage: only what lives as
long as the process may be frozen. The ``NexusSessionWriter`` command freezes once
its session writer is made (it lives until the command ends); the Tango device
server before its devices exist, with the modules of every installed data source
imported first (:func:`~nexus_writer_service.data.opener.import_sources`), since the
Init command replaces a device's writer. Only these entry points freeze, never an
import.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_objects"]


def freeze_startup_objects() -> int:
    """Collect what is garbage now, then leave every object the collector tracks out
    of its later collections (see the module); how many objects are left out."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
