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

* a ``/`` in a key names a member of a subgroup, as ``dicttonx`` makes it:
  ``{"slits/gap": 1}`` is ``{"slits": {"gap": 1}}`` (``"slits/gap@units"`` and
  ``">slits/beam"`` too); a ``.`` or ``..`` part, or a name that is both a value and
  a subgroup, is malformed.

A tree never replaces what the writer plans itself, and never loses a value to it:
a group at the path of one of the writer's groups is merged into it (which keeps its
class); a value, a link or a group at the path of one of the writer's datasets (or
links) is put beside it, as ``<name>_metadata``, and a note says so. The writer's
datasets come from the channels, which may be declared after the metadata was
written: the file then moves the metadata aside (see :mod:`.nexus`). A value no HDF5
attribute or link can be made of raises
:class:`~nexus_writer_service.errors.MalformedInfoError` naming where it is.
"""

from __future__ import annotations

import posixpath
from typing import Any, Mapping, MutableMapping, Optional

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


def _nest(tree: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``tree`` with every key holding a ``/`` moved into its subgroups."""
    nested: dict[str, Any] = {}
    for key, value in tree.items():
        key = str(key)
        member, at, attr = key.rpartition("@") if "@" in key else (key, "", "")
        link = member.startswith(">")
        name = member[1:] if link else member
        if "/" not in name:
            made = nested.get(key)
            if isinstance(made, dict) and isinstance(value, Mapping):
                nested[key] = {**value, **made}  # its subgroup named with a '/' as well
            elif isinstance(made, dict):
                raise MalformedInfoError(
                    f"scan_info {where + '/' + key!r} is both a value and a group; the "
                    "acquisition program sent a malformed scan_info")
            else:
                nested[key] = value
            continue
        parts = [part for part in name.split("/") if part]
        if not parts or any(part in (".", "..") for part in parts):
            raise MalformedInfoError(
                f"scan_info {where + '/' + key!r}: a '/' in a name makes subgroups; "
                "'.' and '..' are not names; the acquisition program sent a malformed "
                "scan_info")
        target = nested
        for depth, group in enumerate(parts[:-1]):
            sub = target.get(group)
            if sub is None or isinstance(sub, Mapping):
                sub = target[group] = dict(sub or {})
            else:
                raise MalformedInfoError(
                    f"scan_info {where + '/' + key!r}: {'/'.join(parts[:depth + 1])!r} "
                    "is both a value and a group; the acquisition program sent a "
                    "malformed scan_info")
            target = sub
        target[(">" if link else "") + parts[-1] + at + attr] = value
    return nested


def _beside(path: str, name: str, planned: Mapping[str, PlanItem]) -> str:
    """A free path beside ``path/name`` for metadata the writer's item there displaces."""
    child = f"{path}/{name}_metadata"
    while child in planned:
        child += "_"
    return child


def tree_items(path: str, tree: Mapping[str, Any], where: str,
               planned: MutableMapping[str, PlanItem],
               notes: Optional[list[str]] = None) -> list[PlanItem]:
    """The items of the group ``path`` made from ``tree`` (``where``: its key in the
    scan_info, for error messages); ``planned``: the items planned so far, by path,
    which the tree does not replace (the items of the tree are added to it);
    ``notes``: where to say which metadata was put beside one of the writer's items."""
    own, member_attrs, members = _split(_nest(tree, where), where)
    nx_class = str(own.pop("NX_class", "NXcollection"))
    items: list[PlanItem] = []
    existing = planned.get(path)
    if existing is not None and not isinstance(existing, GroupPlan):
        parent, name = path.rsplit("/", 1)
        path = _beside(parent, name, planned)
        if notes is not None:
            notes.append(f"scan_info {where!r} is at {path}: the writer has {parent}/{name}")
        existing = None
    if existing is None:
        items.append(GroupPlan(path, nx_class, own, _link_attrs(members, member_attrs)))
        planned[path] = items[-1]
    for key, value in members.items():
        link = key.startswith(">")
        name = safe_name(key[1:] if link else key)
        child = f"{path}/{name}"
        taken = planned.get(child)
        if taken is not None and not (isinstance(value, Mapping) and not link
                                      and isinstance(taken, GroupPlan)):
            child = _beside(path, name, planned)
            if notes is not None:
                notes.append(f"scan_info {where + '/' + key!r} is at {child}: the writer "
                             f"has {path}/{name}")
        if link:
            items.append(_link(child, value, f"{where}/{key}"))
            planned[child] = items[-1]
        elif isinstance(value, Mapping):
            nested = dict(value)
            for attr, attr_value in member_attrs.get(key, {}).items():
                nested.setdefault(f"@{attr}", attr_value)
            items += tree_items(child, nested, f"{where}/{key}", planned, notes)
        else:
            items.append(FieldPlan(child, value, member_attrs.get(key, {})))
            planned[child] = items[-1]
    return items


def _link_attrs(members: Mapping[str, Any], member_attrs: Mapping[str, Mapping[str, Any]]
                ) -> dict[str, dict[str, Any]]:
    """Attributes of members that are links: set on their targets (as silx does)."""
    return {safe_name(name): dict(attrs) for name, attrs in member_attrs.items()
            if f">{name}" in members}
