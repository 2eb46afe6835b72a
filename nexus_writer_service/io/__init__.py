"""NeXus files: the layout planner (pure), save options, file-system checks, HDF5.

One concept per module:

* :mod:`.layout` plans the tree of a scan file and :mod:`.options` holds the save
  options; :mod:`.checks` checks paths and disk space; :mod:`.failures` is the one
  table that classifies file and HDF5 errors (errno, exception types). These four
  import neither h5py nor redis.
* :mod:`.files`: secure file creation and locking, the one way a file is opened for
  writing.
* :mod:`.parking`: disk-full handling, the files HDF5 could not close, kept open by
  their owner (the session writer) until there is space again.
* :mod:`.streams`: a channel's points buffered and written chunk by chunk.
* :mod:`.nexus`: tree materialisation, :class:`~.nexus.NexusFile`.
* :mod:`._lowlevel`: h5py's low-level API, behind one private module (why, and what
  it measured, is in its docstring).
* :mod:`.masterfiles` links entries into master files; :mod:`.lima_files` links or
  copies a detector's own frame files; :mod:`.edf` reads EDF frame headers (numpy
  only); :mod:`.nxcheck` runs nexusformat's checker.
"""

from .layout import NodeSpec, ScanDescription, ScanLayout, plan_scan
from .options import SaveOptions

__all__ = ["NodeSpec", "ScanDescription", "ScanLayout", "SaveOptions", "plan_scan"]
