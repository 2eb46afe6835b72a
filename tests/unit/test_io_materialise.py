"""A layout planned again reaches the file: fields whose planned value changed are
rewritten, and scan metadata at a path the writer's own items take is moved aside;
in the file that made them, and in a file resumed by another NexusFile."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from nexus_writer_service.io.layout import (
    EntryPlan,
    FieldPlan,
    GroupPlan,
    ScanLayout,
    StreamPlan,
)
from nexus_writer_service.io.nexus import NexusFile
from nexus_writer_service.io.options import SaveOptions


def layout(*items: object) -> ScanLayout:
    entry = EntryPlan("1.1", "timer")
    entry.add(GroupPlan("/1.1", "NXentry", {"scan_key": "nws:s:scan:1"}))
    entry.add(GroupPlan("/1.1/instrument", "NXinstrument"))
    for item in items:
        entry.add(item)  # type: ignore[arg-type]
    return ScanLayout({"NX_class": "NXroot"}, [entry], {}, {})


def materialise(path: Path, *layouts: ScanLayout) -> None:
    nexus_file = NexusFile(str(path), SaveOptions(allowed_roots=(str(path.parent),)))
    try:
        for planned in layouts:
            nexus_file.materialise(planned)
    finally:
        nexus_file.close()


START = layout(FieldPlan("/1.1/instrument/positioners/samz", -2.0, {"units": "mm"}),
               FieldPlan("/1.1/end", "unknown"), FieldPlan("/1.1/same", [1.0, math.nan]))
END = layout(FieldPlan("/1.1/instrument/positioners/samz", [-2.0, -1.0], {"units": "mm"}),
             FieldPlan("/1.1/end", "2026-12-07T09:07:41+00:00"),
             FieldPlan("/1.1/same", [1.0, math.nan]))


def check_end(path: Path) -> None:
    with h5py.File(path, "r") as h5:
        samz = h5["/1.1/instrument/positioners/samz"]
        assert samz[()].tolist() == [-2.0, -1.0]
        assert samz.attrs["units"] == "mm"
        assert h5["/1.1/end"].asstr()[()] == "2026-12-07T09:07:41+00:00"


@pytest.mark.parametrize("resumed", [False, True], ids=["same-file", "resumed"])
def test_fields_whose_planned_value_changed_are_rewritten(tmp_path: Path,
                                                          resumed: bool) -> None:
    path = tmp_path / "scan.h5"
    if resumed:
        materialise(path, START)
        materialise(path, END)
    else:
        materialise(path, START, END)
    check_end(path)


def test_an_unchanged_field_of_a_resumed_file_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "scan.h5"
    materialise(path, START)
    with h5py.File(path, "r") as h5:
        address = h5["/1.1/same"].id.get_offset()
    materialise(path, START)
    with h5py.File(path, "r") as h5:
        assert h5["/1.1/same"].id.get_offset() == address
        np.testing.assert_array_equal(h5["/1.1/same"][()], [1.0, math.nan])


@pytest.mark.parametrize("resumed", [False, True], ids=["same-file", "resumed"])
def test_metadata_where_a_channel_goes_is_replaced_by_the_channel(tmp_path: Path,
                                                                  resumed: bool) -> None:
    path = tmp_path / "scan.h5"
    before = layout(FieldPlan("/1.1/instrument/late", "metadata about late"))
    after = layout(GroupPlan("/1.1/instrument/late", "NXdetector"),
                   StreamPlan("/1.1/instrument/late/data", "ctrl:late", "<f8", (), 16,
                              attrs={"channel": "ctrl:late"}),
                   FieldPlan("/1.1/instrument/late_metadata", "metadata about late"))
    if resumed:
        materialise(path, before)
        materialise(path, after)
    else:
        materialise(path, before, after)
    with h5py.File(path, "r") as h5:
        late = h5["/1.1/instrument/late"]
        assert isinstance(late, h5py.Group) and late.attrs["NX_class"] == "NXdetector"
        assert late["data"].attrs["channel"] == "ctrl:late"
        assert h5["/1.1/instrument/late_metadata"].asstr()[()] == "metadata about late"
