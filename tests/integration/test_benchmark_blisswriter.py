"""The blisswriter comparison command on tiny scans of both loads, blisswriter 3.0
missing: our writer's files are written and checked point by point, and the skip
names its cause."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_without_blisswriter_ours_is_measured_and_the_skip_says_why(blissdata_url, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_blisswriter", "--points", "300",
         "--block", "100", "--spectra", "120", "--repeat", "1", "--redis-url", blissdata_url,
         "--blisswriter", str(tmp_path / "no-blisswriter")],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "blisswriter comparison skipped: blisswriter 3.0 not found" in out
    assert "no-blisswriter" in out and "pip install blisswriter==3.0.0" in out
    runs_ok = {}  # measure -> "runs whose file held every point/runs"
    for line in out.splitlines():
        match = re.match(r"(\S.*?: \S+)\s+(\d+/\d+)\s", line)
        if match:
            runs_ok[match.group(1)] = match.group(2)
    assert runs_ok == {"end to end, blocks of 100: ours": "1/1",
                       "end to end, blocks of 100: blisswriter": "0/0",
                       "drain, blocks of 100: ours": "1/1",
                       "drain, blocks of 100: blisswriter": "0/0",
                       "end to end, blocks of 50: ours": "1/1",
                       "end to end, blocks of 50: blisswriter": "0/0",
                       "drain, blocks of 50: ours": "1/1",
                       "drain, blocks of 50: blisswriter": "0/0"}
    assert "4 MCA detectors x 120 4096-channel uint32 spectra at 1000 Hz" in out
    assert "no writer problem seen" in out
