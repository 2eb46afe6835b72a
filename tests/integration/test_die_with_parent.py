"""Guarded children die with the process that started them, however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nexus_writer_service import die_with_parent
from tests.writer_support import process_alive

#: Starts a guarded ``sleep`` and prints its PID, then waits to be killed.
_PARENT = """
import subprocess, sys, time
from nexus_writer_service.die_with_parent import guarded
child = subprocess.Popen(guarded(["sleep", "120"]))
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_guarded_child_dies_when_its_parent_is_killed(sig: int) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        time.sleep(0.2)
        assert process_alive(child), "the guarded command did not start"
        with open(f"/proc/{child}/cmdline", "rb") as cmdline:
            assert cmdline.read().split(b"\0")[:2] == [b"sleep", b"120"], "not exec'd in place"
        parent.send_signal(sig)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while process_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_alive(child), "the child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        assert parent.stdout is not None
        parent.stdout.close()


def test_a_parent_gone_before_the_guard_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    not_my_parent = os.getpid() + 10**6
    result = subprocess.run([sys.executable, "-m", die_with_parent.__name__,
                             str(not_my_parent), str(int(signal.SIGTERM)), "touch",
                             str(marker)], timeout=30, check=False)
    assert result.returncode == 128 + signal.SIGTERM
    assert not marker.exists()


def test_usage_and_a_missing_command_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert die_with_parent.main(["1"]) == 2
    assert "usage" in capsys.readouterr().err
    result = subprocess.run(die_with_parent.guarded(["/nonexistent/command"]),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 127 and "/nonexistent/command" in result.stderr
