"""NeXus files: the layout planner (pure), save options, file-system checks, HDF5.

:mod:`.layout` and :mod:`.options` import neither h5py nor redis; :mod:`.nexus`
materialises a layout with h5py, creating its objects through :mod:`.objects`;
:mod:`.edf` reads EDF frame headers (numpy only) and :mod:`.lima_files` links or
copies a detector's own frame files.
"""

from .layout import NodeSpec, ScanDescription, ScanLayout, plan_scan
from .options import SaveOptions

__all__ = ["NodeSpec", "ScanDescription", "ScanLayout", "SaveOptions", "plan_scan"]
