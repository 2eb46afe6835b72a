"""Metadata trees of a scan as plan items (pure): the ``scan_meta_categories`` of
BLISS (``instrument``, ``technique``...), written with the conventions of silx's
``dicttonx``, which BLISS users write these trees with.

* a mapping is a group, of the class its ``"@NX_class"`` (or ``"NX_class"``) names,
  else ``NXcollection``;
* ``"@name"`` is an attribute of the group, ``"member@name"`` an attribute of its
  member ``member`` (a dataset, a group, or the target of a link);
* ``">name"`` is a link: to ``"file::/path"`` an external link, to any other path a
  soft link (absolute in the file, or relative to the group: ``..`` and ``.`` allowed);
* anything else is a dataset; ``None`` is left out.

A tree never replaces what the writer plans itself: an item at a path the writer
already plans is left out (the writer's groups keep their class), and so is what
would go under one of its datasets. A value no HDF5 attribute or link can be made of
raises :class:`~nexus_writer_service.errors.MalformedInfoError` naming where it is.
"""

from __future__ import annotations

import posixpath
from typing import Any, Mapping

from ..errors import MalformedInfoError
from .plan import FieldPlan, GroupPlan, LinkPlan, PlanItem, safe_name

__all__ = ["tree_items"]


def _attr_value(value: Any, where: str) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, list) and value and (
            all(isinstance(v, str) for v in value)
            or all(isinstance(v, (bool, int, float)) for v in value)):
        return value
    raise MalformedInfoError(
        f"scan_info {where!r} is {value!r}: an attribute must be a text, a number or a "
        "list of texts or of numbers; the acquisition program sent a malformed scan_info")


def _link(path: str, value: Any, where: str) -> LinkPlan:
    if not isinstance(value, str) or not value:
        raise MalformedInfoError(
            f"scan_info {where!r} is {value!r}: a link must name its target "
            "('/path', 'relative/path' or 'file.h5::/path'); the acquisition program "
            "sent a malformed scan_info")
    filename, separator, target = value.partition("::")
    if separator:
        return LinkPlan(path, target or "/", filename)
    target = posixpath.normpath(posixpath.join(posixpath.dirname(path), value))
    return LinkPlan(path, "/" + target.lstrip("/"))


def _split(tree: Mapping[str, Any], where: str
           ) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any]]:
    """(own attributes, attributes by member, members) of one mapping."""
    own: dict[str, Any] = {}
    member_attrs: dict[str, dict[str, Any]] = {}
    members: dict[str, Any] = {}
    for key, value in tree.items():
        key = str(key)
        if key == "NX_class":
            key = "@NX_class"
        if "@" in key:
            member, _, attr = key.rpartition("@")
            if value is None or not attr:
                continue
            value = _attr_value(value, f"{where}/{key}")
            if member:
                member_attrs.setdefault(member.lstrip(">"), {})[attr] = value
            else:
                own[attr] = value
        elif value is not None:
            members[key] = value
    return own, member_attrs, members


def tree_items(path: str, tree: Mapping[str, Any], where: str,
               planned: Mapping[str, PlanItem]) -> list[PlanItem]:
    """The items of the group ``path`` made from ``tree`` (``where``: its key in the
    scan_info, for error messages); ``planned``: the items the writer plans itself,
    by path, which the tree does not replace."""
    own, member_attrs, members = _split(tree, where)
    nx_class = str(own.pop("NX_class", "NXcollection"))
    items: list[PlanItem] = []
    existing = planned.get(path)
    if existing is None:
        items.append(GroupPlan(path, nx_class, own, _link_attrs(members, member_attrs)))
    elif not isinstance(existing, GroupPlan):
        return []
    for key, value in members.items():
        link = key.startswith(">")
        name = safe_name(key[1:] if link else key)
        child = f"{path}/{name}"
        if link:
            if child not in planned:
                items.append(_link(child, value, f"{where}/{key}"))
        elif isinstance(value, Mapping):
            nested = dict(value)
            for attr, attr_value in member_attrs.get(key, {}).items():
                nested.setdefault(f"@{attr}", attr_value)
            items += tree_items(child, nested, f"{where}/{key}", planned)
        elif child not in planned:
            items.append(FieldPlan(child, value, member_attrs.get(key, {})))
    return items


def _link_attrs(members: Mapping[str, Any], member_attrs: Mapping[str, Mapping[str, Any]]
                ) -> dict[str, dict[str, Any]]:
    """Attributes of members that are links: set on their targets (as silx does)."""
    return {safe_name(name): dict(attrs) for name, attrs in member_attrs.items()
            if f">{name}" in members}
