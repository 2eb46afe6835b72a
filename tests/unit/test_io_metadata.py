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


def _planned() -> dict:
    data = StreamPlan("/1.1/instrument/diode/data", "diode", "<f8", (), 10)
    return {"/1.1/instrument": GroupPlan("/1.1/instrument", "NXinstrument"),
            "/1.1/instrument/diode": GroupPlan("/1.1/instrument/diode", "NXdetector"),
            data.path: data}


def test_the_writers_own_items_are_never_replaced_and_the_metadata_kept_beside() -> None:
    planned = _planned()
    tree = {"@NX_class": "NXcollection", "diode": {"@NX_class": "NXcollection",
                                                   "data": 1, "gain": 2}}
    notes: list[str] = []
    items = tree_items("/1.1/instrument", tree, "instrument", planned, notes)
    assert items == [FieldPlan("/1.1/instrument/diode/data_metadata", 1),
                     FieldPlan("/1.1/instrument/diode/gain", 2)]
    assert notes == ["scan_info 'instrument/diode/data' is at "
                     "/1.1/instrument/diode/data_metadata: the writer has "
                     "/1.1/instrument/diode/data"]
    tree = {"diode": {"data": {"y": 1}}}
    items = tree_items("/1.1/instrument", tree, "instrument", _planned())
    assert items == [GroupPlan("/1.1/instrument/diode/data_metadata", "NXcollection"),
                     FieldPlan("/1.1/instrument/diode/data_metadata/y", 1)]


def test_a_slash_in_a_key_makes_subgroups_as_dicttonx_does() -> None:
    tree = {"slits/gap": 0.5, "slits/gap@units": "mm",
            "slits": {"@NX_class": "NXslit", "x": 1},
            ">slits/beam": "/1.1/beam", "a//b/": 2}
    items = {item.path: item for item in tree_items("/1.1/tech", tree, "tech", {})}
    assert items["/1.1/tech/slits"] == GroupPlan("/1.1/tech/slits", "NXslit")
    assert items["/1.1/tech/slits/x"] == FieldPlan("/1.1/tech/slits/x", 1)
    assert items["/1.1/tech/slits/gap"] == FieldPlan("/1.1/tech/slits/gap", 0.5,
                                                     {"units": "mm"})
    assert items["/1.1/tech/slits/beam"] == LinkPlan("/1.1/tech/slits/beam", "/1.1/beam")
    assert items["/1.1/tech/a/b"] == FieldPlan("/1.1/tech/a/b", 2)
    assert "/1.1/tech/slits_gap" not in items


@pytest.mark.parametrize("tree, where", [
    ({"../escape": 1}, "'tech/../escape'"),
    ({"a/./b": 1}, "'tech/a/./b'"),
    ({"a": 1, "a/b": 2}, "'tech/a/b'.*'a' is both a value and a group"),
])
def test_malformed_slashes_name_where_they_are(tree: dict, where: str) -> None:
    with pytest.raises(MalformedInfoError, match=where):
        tree_items("/1.1/tech", tree, "tech", {})


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
