"""The switch interval a writer process sets for its reader and HDF5 threads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nexus_writer_service.tuning import WRITER_SWITCH_INTERVAL, use_switch_interval
from nexus_writer_service.errors import ArgumentTypeError, ConfigurationError


def test_sets_the_interval_and_returns_the_previous_one():
    before = sys.getswitchinterval()
    try:
        assert use_switch_interval() == before
        assert sys.getswitchinterval() == pytest.approx(WRITER_SWITCH_INTERVAL)
        assert use_switch_interval(0.002) == pytest.approx(WRITER_SWITCH_INTERVAL)
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)


@pytest.mark.parametrize("bad, error, words", [
    ("0.001", ArgumentTypeError, "number of seconds"),
    (True, ArgumentTypeError, "number of seconds"),
    (0.0, ConfigurationError, "between 1e-6 and 1 s"),
    (5.0, ConfigurationError, "between 1e-6 and 1 s"),
])
def test_bad_intervals_are_refused_and_change_nothing(bad, error, words):
    before = sys.getswitchinterval()
    with pytest.raises(error, match=words):
        use_switch_interval(bad)
    assert sys.getswitchinterval() == before


# In a process of its own: the settings are the whole process's (of glibc's and HDF5's,
# only the switch interval can be read back).
SETTINGS = """
import sys
from nexus_writer_service.tuning import WRITER_SWITCH_INTERVAL, use_writer_settings
use_writer_settings()
print(sys.getswitchinterval() == WRITER_SWITCH_INTERVAL)
"""


def test_a_writer_process_makes_its_settings_in_one_call():
    done = subprocess.run([sys.executable, "-c", SETTINGS], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "True"
