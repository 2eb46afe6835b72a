"""What silx shows for an NXdata group, chosen as silx's data viewer chooses, without Qt.

silx's viewer (``silx.gui.data.DataViews``) gives each NXdata view a priority and
shows the highest: a scatter (200) when the signal is 1D with exactly two axes of
its shape; a curve when the signal has a dimension (200 with
``@interpretation="spectrum"``, else 110); an image when it has two or more (200 with
``@interpretation="image"``, else 120). Only ``silx.io.nxdata``'s parser is used,
through names that are not deprecated in any silx release.
"""

from __future__ import annotations

import h5py
from silx.io import nxdata

__all__ = ["silx_view"]


def _priorities(nxd: nxdata.NXdata) -> dict[str, int]:
    signal = nxd.signal
    axes = nxd.axes
    priorities = {}
    if signal.ndim == 1 and len(axes) == 2 and all(
            axis is not None and axis.shape == signal.shape for axis in axes):
        priorities["scatter"] = 200
    if signal.ndim >= 1:
        priorities["curve"] = 200 if nxd.interpretation == "spectrum" else 110
    if signal.ndim >= 2:
        priorities["image"] = 200 if nxd.interpretation == "image" else 120
    return priorities


def silx_view(group: h5py.Group) -> str:
    """``"scatter"``, ``"curve"`` or ``"image"``: the view silx opens ``group`` with
    (a tie goes to the first of these, as in silx); AssertionError if silx does not
    take it for a valid NXdata group."""
    nxd = nxdata.NXdata(group)
    assert nxd.is_valid, (group.name, getattr(nxd, "issues", None))
    priorities = _priorities(nxd)
    assert priorities, f"silx has no plot for {group.name}"
    return max(priorities, key=lambda view: priorities[view])
