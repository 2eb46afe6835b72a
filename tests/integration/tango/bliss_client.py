"""The writer's client side of BLISS 2.4, as the tests speak it to our device.

BLISS 2.x (``bliss/scanning/writer/external_tango.py``) finds the session's writer as
the one device of class ``NexusWriter`` whose ``session`` property matches
(blisswriter's ``find_session_writer``) and, for every scan, calls:

* ``prepare``: ``state`` (must be ON or RUNNING), ``makedirs(root)``, ``scan_exists``
  polled for 10 s, ``scan_has_write_permissions``, ``scan_disk_space_error``;
* every 3 s on master events, and at ``finalize`` when that never happened (polled
  for 10 s): ``scan_disk_space_warning`` (a warning), then ``scan_state``: FAULT
  makes the scan fail with ``scan_state_reason``.

Every call goes through a proxy whose timeout is 3 s, retried every 0.1 s until the
method's timeout; BLISS compares the answers with ``DevState`` members and calls
``.name`` on them. :class:`BlissWriterClient` does the same, with the same errors
(``RuntimeError`` with BLISS's messages) and keeps the warnings BLISS would log.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

import tango
from tango import DevState

WRITER_CLASS = "NexusWriter"
PROXY_TIMEOUT = 3.0
RETRY_TIMEOUT = 10


def find_session_writer(session: str, database: tango.Database) -> Optional[str]:
    """The device of class NexusWriter whose ``session`` property is ``session``."""
    found = []
    for device in database.get_device_name("*", WRITER_CLASS):
        values = database.get_device_property(device, "session")["session"]
        if values and values[0] == session:
            found.append(device)
    if len(found) > 1:
        raise ValueError(f"Found more than one writer for session '{session}': {found}")
    return found[0] if found else None


class BlissWriterClient:
    """One scan's calls to the session's writer, as BLISS 2.4 makes them."""

    def __init__(self, session: str, database: tango.Database) -> None:
        device = find_session_writer(session, database)
        if not device:
            raise RuntimeError("No Nexus writer registered for this session")
        self.proxy = tango.DeviceProxy(device)
        self.scan_name = ""
        self.warnings: list[str] = []

    # -- what BLISS's scan calls --------------------------------------------------

    def prepare(self, scan_name: str, root: str) -> None:
        self.scan_name = scan_name
        self._retry(self._is_writer_on, "Nexus writer is not ON or RUNNING")
        self._retry(self._makedirs, "Nexus writer cannot create directory", args=(root,))
        self._retry(self._scan_exists,
                    f"Nexus writer did not receive scan '{scan_name}' after {{timeout}}s",
                    raise_on_timeout=True)
        self._retry(self._check_writer_permissions,
                    "Nexus writer does not have write permissions")
        self._retry(self._check_required_disk_space, "Not enough free disk space")

    def check(self, timeout: float = 0) -> None:
        """The periodic check on master events (timeout 0), and the one of finalize
        (timeout 10 s)."""
        self._retry(self._warn_low_disk_space, "Cannot check Nexus writer scan disk space",
                    timeout=timeout)
        self._retry(self._is_scan_notfault, "Cannot check Nexus writer scan state",
                    timeout=timeout)

    def finalize(self) -> None:
        self.check(timeout=RETRY_TIMEOUT)

    def str_scan_state(self) -> str:
        """BLISS's ``_str_scan_state``: calls ``.name`` on the scan state."""
        state = self.proxy.scan_state(self.scan_name)
        reason = self.proxy.scan_state_reason(self.scan_name)
        return f"Nexus writer scan {self.scan_name!r} in {state.name} state ({reason})"

    # -- the checks -------------------------------------------------------------------

    def _is_writer_on(self) -> bool:
        state = self.proxy.state()
        if state in (DevState.ON, DevState.RUNNING):
            return True
        if state in (DevState.FAULT, DevState.OFF, DevState.UNKNOWN):
            raise RuntimeError(
                f"Nexus writer service is in {state.name} state ({self.proxy.status()}). "
                "Call the Nexus writer 'start' method.")
        return False

    def _makedirs(self, root: str) -> bool:
        abspath = os.path.abspath(root)
        if not os.path.isdir(abspath):
            self.proxy.makedirs(abspath)
        return True

    def _scan_exists(self) -> bool:
        return bool(self.proxy.scan_exists(self.scan_name))

    def _check_writer_permissions(self) -> bool:
        if not self.proxy.scan_has_write_permissions(self.scan_name):
            raise RuntimeError("Nexus writer does not have write permissions")
        return True

    def _check_required_disk_space(self) -> bool:
        message = self.proxy.scan_disk_space_error(self.scan_name)
        if message:
            raise RuntimeError(message)
        return True

    def _warn_low_disk_space(self) -> bool:
        message = self.proxy.scan_disk_space_warning(self.scan_name)
        if message:
            self.warnings.append(message)
        return True

    def _is_scan_notfault(self) -> bool:
        state = self.proxy.scan_state(self.scan_name)
        if state == DevState.FAULT:
            reason = self.proxy.scan_state_reason(self.scan_name)
            raise RuntimeError(f"Nexus writer is in FAULT state ({reason})")
        return True

    def _retry(self, method: Callable[..., bool], fail_msg: str, timeout: float = RETRY_TIMEOUT,
               raise_on_timeout: bool = False, args: tuple[Any, ...] = ()) -> None:
        """BLISS's ``_retry``: call until True; a ``DevFailed`` of the device ends the
        retries with a RuntimeError; a timeout raises or is logged (a warning)."""
        started = time.time()
        first = True
        message = fail_msg
        self.proxy.set_timeout_millis(int(PROXY_TIMEOUT * 1000))
        while time.time() - started < timeout or first:
            first = False
            try:
                if method(*args):
                    return
            except (tango.ConnectionFailed, tango.CommunicationFailed) as exc:
                message = f"{fail_msg} ({exc.args[0].reason}: {exc.args[0].desc.strip()})"
            except tango.DevFailed as exc:
                raise RuntimeError(
                    f"{fail_msg} (Nexus writer {exc.args[0].reason}: "
                    f"{exc.args[0].desc.strip()})") from exc
            time.sleep(0.1)
        shown = message.format(timeout=timeout)
        if raise_on_timeout:
            raise RuntimeError(shown)
        self.warnings.append(shown)
