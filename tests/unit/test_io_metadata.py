"""Scan metadata trees planned with silx's dicttonx conventions (pure)."""

from __future__ import annotations

import pytest

from nexus_writer_service.errors import MalformedInfoError
from nexus_writer_service.io.metadata import tree_items
from nexus_writer_service.io.plan import FieldPlan, GroupPlan, LinkPlan, StreamPlan
from nexus_writer_service.io.scan_info import categories


def test_groups_attributes_fields_and_links() -> None:
    tree = {"@NX_class": "NXcollection", "@note": "n", "a": 1, "a@units": "mm",
            "sub": {"@NX_class": "NXnote", "b": "text"}, "sub@extra": 2,
            ">up": "../other/x", ">abs": "/1.1/y", ">ext": "raw.h5::/1.1/z",
            "ext@units": "s", "skipped": None}
    items = {item.path: item for item in tree_items("/1.1/tech", tree, "tech", {})}
    assert items["/1.1/tech"] == GroupPlan("/1.1/tech", "NXcollection", {"note": "n"},
                                           {"ext": {"units": "s"}})
    assert items["/1.1/tech/a"] == FieldPlan("/1.1/tech/a", 1, {"units": "mm"})
    assert items["/1.1/tech/sub"] == GroupPlan("/1.1/tech/sub", "NXnote", {"extra": 2})
    assert items["/1.1/tech/sub/b"] == FieldPlan("/1.1/tech/sub/b", "text")
    assert items["/1.1/tech/up"] == LinkPlan("/1.1/tech/up", "/1.1/other/x")
    assert items["/1.1/tech/abs"] == LinkPlan("/1.1/tech/abs", "/1.1/y")
    assert items["/1.1/tech/ext"] == LinkPlan("/1.1/tech/ext", "/1.1/z", "raw.h5")
    assert "/1.1/tech/skipped" not in items


def test_the_writers_own_items_are_never_replaced() -> None:
    data = StreamPlan("/1.1/instrument/diode/data", "diode", "<f8", (), 10)
    planned = {"/1.1/instrument": GroupPlan("/1.1/instrument", "NXinstrument"),
               "/1.1/instrument/diode": GroupPlan("/1.1/instrument/diode", "NXdetector"),
               data.path: data}
    tree = {"@NX_class": "NXcollection", "diode": {"@NX_class": "NXcollection",
                                                   "data": 1, "gain": 2}}
    items = tree_items("/1.1/instrument", tree, "instrument", planned)
    assert items == [FieldPlan("/1.1/instrument/diode/gain", 2)]
    tree = {"diode": {"data": {"y": 1}}}
    assert tree_items("/1.1/instrument", tree, "instrument", planned) == []


@pytest.mark.parametrize("tree, where", [
    ({"a": 1, "a@units": {"u": 1}}, "'tech/a@units'"),
    ({"sub": {">link": 3}}, "'tech/sub/>link'"),
    ({"@x": [1, "a"]}, "'tech/@x'"),
])
def test_malformed_values_name_where_they_are(tree: dict, where: str) -> None:
    with pytest.raises(MalformedInfoError, match=where):
        tree_items("/1.1/tech", tree, "tech", {})


def test_categories_leave_out_what_the_writer_places_itself() -> None:
    info = {"scan_meta_categories": ["positioners", "nexuswriter", "instrument",
                                     "technique"], "instrument": {}}
    assert categories(info) == ["instrument", "technique"]
    assert categories({"instrument": {"name": "x"}}) == ["instrument"]
    assert categories({}) == []
    with pytest.raises(MalformedInfoError, match="'scan_meta_categories'"):
        categories({"scan_meta_categories": "instrument"})
