"""Master files: HDF5 files that gather the entries of many scan files by external links.

A beamline often wants one file per dataset collection (or per proposal) that
shows every scan of it. BLISS names them in ``scan_info["nexuswriter"]["masterfiles"]``
(``{"dataset_collection": "/data/.../sample1.h5", "proposal": ".../ih0000.h5"}``, read
by :func:`~.scan_info.master_files`); for every entry of a scan file the writer adds,
in each master file, an external link pointing to the entry through a path *relative
to the master file*, so a whole directory tree can be moved or copied without
breaking links. The link names are the classic writer's
(:func:`~.scan_info.master_link_name`).

Ownership: called from the writers' worker thread only; each call opens, updates
and closes the master file, so readers are blocked for milliseconds at most.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import h5py

from ..errors import DiskSpaceError
from .checks import check_path_allowed, makedirs_allowed
from .files import open_for_writing
from .parking import ParkedFiles

__all__ = ["link_entries"]


def link_entries(master: str, scan_file: str, entries: Sequence[str], roots: Sequence[str],
                 retry_time: float = 3.0, file_mode: int = 0o664,
                 parked: Optional[ParkedFiles] = None,
                 names: Optional[Sequence[str]] = None) -> list[str]:
    """Link each of ``entries`` of ``scan_file`` into ``master`` under the name at the
    same place in ``names`` (the entry's own name when None); returns the names linked.

    An entry name already linked to the same target is kept; one that points
    elsewhere is left alone and reported in the returned list as ``"<name> (taken)"``.
    A new master file has exactly the permissions ``file_mode`` from the moment it
    appears. ``parked``: the owner's files left open when the disk was full (see
    :mod:`.parking`): a master file it holds is closed first, and one that cannot be
    closed now is left there (a new one when None: nobody releases it then).

    :raises PathNotAllowedError: ``master`` is relative or outside the allowed roots
        (checked again on the file opened, so a symbolic link swapped after the check
        cannot lead out)
    """
    master = check_path_allowed(master, roots, "master file")
    makedirs_allowed(os.path.dirname(master), roots)
    relative = os.path.relpath(scan_file, os.path.dirname(master))
    parked = ParkedFiles() if parked is None else parked
    h5 = open_for_writing(master, retry_time, "master file", file_mode, roots, parked)
    try:
        done = _link(h5, relative, entries, entries if names is None else names)
    finally:
        closed = parked.close_or_park(h5, master)
    if not closed:
        raise DiskSpaceError(
            f"no space left on device to update master file {master}: it stays open in this "
            "process until space is freed; free disk space (the next scan updates it)")
    return done


def _link(h5: h5py.File, relative: str, entries: Sequence[str], names: Sequence[str]
          ) -> list[str]:
    done = []
    h5.attrs.setdefault("NX_class", "NXroot")
    h5.attrs.setdefault("creator", "nexus_writer_service")
    for entry, name in zip(entries, names):
        link = h5.get(name, getlink=True)
        if link is None:
            h5[name] = h5py.ExternalLink(relative, f"/{entry}")
            done.append(name)
        elif isinstance(link, h5py.ExternalLink) and link.filename == relative \
                and link.path == f"/{entry}":
            done.append(name)
        else:
            done.append(f"{name} (taken)")
    if names and "default" not in h5.attrs:
        h5.attrs["default"] = names[0]
    return done
