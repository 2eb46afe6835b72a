"""Rewriting: what a scan file holds brought up to a plan that changed.

The scan_info is completed while the scan runs (end positions, comments, units...):
the fields made from it are rewritten when their planned value or attributes change
(in place when the new value fits, so a reader without locking never meets a freed
object), groups get their planned class and attributes, streams their planned
attributes, and an object of another kind found at a planned path is removed.

:class:`Rewriting` is the part of :class:`~.nexus.NexusFile` that does this; it
shares that class's ownership (the thread that opened the file) and its state.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import h5py
import numpy as np

from ..data.codec import jsonable
from ._lowlevel import set_attrs as _set_attrs
from .layout import FieldPlan, GroupPlan, LinkPlan, StreamPlan
from .streams import Stream

__all__ = ["Rewriting"]

_STR = h5py.string_dtype()


def _field_data(value: Any) -> Any:
    if isinstance(value, str):
        return np.array(value, dtype=_STR)
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, str) for item in value):
            return np.array(value, dtype=_STR)
        try:
            array = np.asarray(value)
        except ValueError:
            return np.array(json.dumps(value), dtype=_STR)
        if array.dtype.kind in "OU":
            return np.array(json.dumps(value), dtype=_STR)
        return array
    return value


def _same_value(known: Any, planned: Any) -> bool:
    """Whether two planned values are the same (NaN equal to NaN)."""
    if known is planned:
        return True
    try:
        if known == planned:
            return True
    except (TypeError, ValueError):
        pass
    return json.dumps(jsonable(known), sort_keys=True, default=str) == json.dumps(
        jsonable(planned), sort_keys=True, default=str)


def _fits(dataset: h5py.Dataset, data: Any) -> bool:
    """Whether ``data`` can be written over the whole of ``dataset``, as it would be
    created for it (same shape; text over text, or the same dtype)."""
    array = np.asarray(data)
    if dataset.shape != array.shape:
        return False
    if h5py.check_string_dtype(dataset.dtype) is not None:
        return array.dtype.kind == "O"
    return bool(dataset.dtype == array.dtype)


def _stored_equal(dataset: h5py.Dataset, value: Any) -> bool:
    """Whether ``dataset`` holds ``value`` as :func:`_field_data` stores it."""
    data = np.asarray(_field_data(value))
    try:
        if h5py.check_string_dtype(dataset.dtype) is not None:
            if data.dtype.kind not in "OUS":
                return False
            return bool(np.array_equal(np.asarray(dataset.asstr()[()]).astype(str),
                                       data.astype(str)))
        stored = dataset[()]
        if data.dtype.kind in "OUS" or np.shape(stored) != data.shape:
            return False
        return bool(np.array_equal(stored, data, equal_nan=data.dtype.kind in "fc"))
    except (TypeError, ValueError):
        return False


def _text_attr(obj: h5py.HLObject, name: str) -> str | None:
    value = obj.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else value


class Rewriting:
    """The methods of :class:`~.nexus.NexusFile` that compare what the file holds
    with the plan, and rewrite what changed."""

    file: h5py.File
    # the kind of plan item each path was made (or found) for
    _created: dict[str, type]
    _group_class: dict[str, str]
    # the value and attributes of every field as last written (or found) here
    _fields: dict[str, tuple[Any, Mapping[str, Any]]]
    # the attributes of every stream as last written here
    _stream_attrs: dict[str, Mapping[str, Any]]
    _streams: dict[str, Stream]

    def _exists(self, item: Any, fresh: bool) -> bool:
        """Whether the file has ``item`` already. Something else at its path (scan
        metadata written before a channel took its place: the plan now puts the
        metadata beside it, see :mod:`.metadata`) is removed first."""
        kind = self._created.get(item.path)
        if kind is None and not fresh:
            kind = self._found(item)
            if kind is not None:
                self._created[item.path] = kind
        if kind is None:
            return False
        if kind is type(item):
            return True
        self._remove(item.path)
        return False

    def _found(self, item: Any) -> type | None:
        """The kind of plan item the object at ``item.path`` of an entry this object
        did not create was made for (as far as it matters), or None."""
        if isinstance(item, LinkPlan):
            return LinkPlan if item.path in self.file or self._has_link(item.path) else None
        found = self.file.get(item.path)
        if found is None:
            return None
        if isinstance(found, h5py.Group):
            return GroupPlan
        if isinstance(item, StreamPlan) and "channel" not in found.attrs:
            return FieldPlan
        return type(item) if not isinstance(item, GroupPlan) else FieldPlan

    def _remove(self, path: str) -> None:
        """Remove the object at ``path`` and forget what was made under it."""
        del self.file[path]
        inside = path + "/"
        for known in (self._created, self._fields, self._group_class, self._stream_attrs):
            for name in [name for name in known if name == path or name.startswith(inside)]:
                del known[name]

    def _update_group(self, plan: GroupPlan) -> None:
        """An existing group gets the attributes planned now, and its planned class
        (a group made from scan metadata may turn out to be a detector's)."""
        if self._group_class.get(plan.path) != plan.nx_class:
            group = self.file[plan.path]
            if _text_attr(group, "NX_class") != plan.nx_class:
                group.attrs["NX_class"] = plan.nx_class
            self._group_class[plan.path] = plan.nx_class
        if plan.attrs:
            _set_attrs(self.file[plan.path], plan.attrs)

    def _update_field(self, plan: FieldPlan) -> None:
        """Rewrite a field whose planned value or attributes changed since it was
        written (a field of a resumed file is compared with the file once). A path
        that holds something else than a field is left as it is."""
        known = self._fields.get(plan.path)
        if known is not None and _same_value(known[0], plan.value) \
                and _same_value(known[1], plan.attrs):
            return
        dataset = self.file.get(plan.path)
        if not isinstance(dataset, h5py.Dataset):
            self._fields[plan.path] = (plan.value, plan.attrs)
            return
        if known is None and _stored_equal(dataset, plan.value):
            _set_attrs(dataset, plan.attrs)
        elif _fits(dataset, _field_data(plan.value)):
            # in place: a reader without locking never meets a freed object
            dataset[()] = _field_data(plan.value)
            _set_attrs(dataset, plan.attrs)
        else:
            del dataset
            del self.file[plan.path]
            self._create_field(plan)
        self._fields[plan.path] = (plan.value, plan.attrs)

    def _update_stream_attrs(self, plan: StreamPlan) -> None:
        """A stream's planned attributes that changed (a unit published in the
        scan_info's ``channels`` after the channel was declared), or those of a
        stream of a resumed file, written once."""
        if self._stream_attrs.get(plan.path) == plan.attrs:
            return
        _set_attrs(self._streams[plan.channel].dataset, plan.attrs)
        self._stream_attrs[plan.path] = plan.attrs

    def _create_field(self, plan: FieldPlan) -> None:
        dataset = self.file.create_dataset(plan.path, data=_field_data(plan.value))
        _set_attrs(dataset, plan.attrs)
        self._fields[plan.path] = (plan.value, plan.attrs)

    def _has_link(self, path: str) -> bool:
        parent, name = path.rsplit("/", 1)
        group = self.file.get(parent or "/")
        return isinstance(group, h5py.Group) and name in group
