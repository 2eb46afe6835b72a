"""The whole-system benchmark command starts and lists every scenario (nothing is run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_benchmark_help_lists_the_scenarios():
    result = subprocess.run([sys.executable, "-m", "tests.benchmarks", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in ("--quick", "--scenario", "--redis-url"):
        assert option in result.stdout
    for number in range(1, 9):
        assert f"  {number}. " in result.stdout


def test_benchmark_rejects_an_unknown_scenario():
    result = subprocess.run([sys.executable, "-m", "tests.benchmarks", "--scenario", "9"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--scenario" in result.stderr
