"""A scan's tree created in slices (the other scans of the session write in between)
is the same tree as one created at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import pytest

from nexus_writer_service.io.nexus import NexusFile
from nexus_writer_service.io.options import SaveOptions
from tests.unit.test_io_layout import all_items, layout_of


def tree(path: Path) -> dict[str, Any]:
    """Every object of the file: its kind, attributes, shape and dtype or link target."""
    found: dict[str, Any] = {}
    with h5py.File(path, "r") as h5:
        def visit(name: str, link: Any) -> None:
            if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
                found[name] = ("link", link.path)
                return
            obj = h5[name]
            attrs = {key: repr(obj.attrs[key]) for key in obj.attrs
                     if key not in ("file_time",)}
            if isinstance(obj, h5py.Dataset):
                found[name] = ("dataset", obj.shape, obj.dtype.str, attrs)
            else:
                found[name] = ("group", attrs)
        h5.visititems_links(visit)
    return found


@pytest.mark.parametrize("kind", ["many_channels", "two_top_masters", "mca"])
def test_a_tree_created_in_slices_is_the_tree_created_at_once(tmp_path: Path,
                                                              kind: str) -> None:
    layout = layout_of(kind)
    options = SaveOptions(required_disk_space=0, recommended_disk_space=0)
    whole = NexusFile(str(tmp_path / "whole.h5"), options)
    assert whole.materialise(layout) is True
    whole.close()
    sliced = NexusFile(str(tmp_path / "sliced.h5"), options)
    calls = 1
    while not sliced.materialise(layout, until=0.0):  # always late: the smallest slices
        calls += 1
    sliced.close()
    assert calls >= len(all_items(layout)) // 32
    assert tree(tmp_path / "sliced.h5") == tree(tmp_path / "whole.h5")
