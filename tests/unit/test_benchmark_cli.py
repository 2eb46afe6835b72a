"""The whole-system benchmark command starts and lists every scenario (nothing is run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def test_benchmark_help_lists_the_scenarios():
    result = subprocess.run([sys.executable, "-m", "tests.benchmarks", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in ("--quick", "--scenario", "--repeat", "--redis-url"):
        assert option in result.stdout
    for number in range(1, 9):
        assert f"  {number}. " in result.stdout


def test_benchmark_rejects_an_unknown_scenario():
    result = subprocess.run([sys.executable, "-m", "tests.benchmarks", "--scenario", "9"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--scenario" in result.stderr


def test_repeated_measures_are_combined_by_their_medians():
    from tests.benchmarks.baselines import Timing
    from tests.benchmarks.system import median_of

    runs = [
        {"outcome": "", "writer": Timing(0.9, 0.8), "h5py": Timing(0.3, 0.3), "rss": 150.0},
        {"outcome": "", "writer": Timing(0.5, 0.6), "h5py": Timing(0.1, 0.2), "rss": 190.0},
        {"outcome": "FAULT x", "writer": Timing(0.6, 0.7), "rss": 170.0, "publish": 0.4},
    ]
    out = median_of(runs)
    assert out["writer"] == Timing(0.6, 0.7)
    assert out["h5py"] == Timing(0.2, 0.25)  # the runs that have it
    assert out["rss"] == 190.0 and out["publish"] == 0.4
    assert out["outcome"] == "FAULT x"


def test_the_system_part_of_repeated_measures_is_their_median_where_known():
    from tests.benchmarks.baselines import Timing
    from tests.benchmarks.system import median_of

    runs = [
        {"outcome": "", "writer": Timing(0.9, 0.8, 0.2), "h5py": Timing(0.3, 0.3)},
        {"outcome": "", "writer": Timing(0.5, 0.6, 0.1), "h5py": Timing(0.1, 0.2)},
        {"outcome": "", "writer": Timing(0.6, 0.7)},
    ]
    out = median_of(runs)
    assert (out["writer"].wall, out["writer"].cpu) == (0.6, 0.7)
    assert out["writer"].sys == pytest.approx(0.15)
    assert out["h5py"].sys is None


def test_targets_are_judged_on_ratios_of_measures_of_the_same_repetition():
    from tests.benchmarks.baselines import Timing
    from tests.benchmarks.system import median_or_inf, paired

    drains = [
        {"outcome": "", "writer": Timing(0.2, 0.4), "h5py": Timing(0.1, 0.1)},
        {"outcome": "", "writer": Timing(0.2, 0.3), "h5py": Timing(0.1, 0.3)},
        {"outcome": "FAULT x", "writer": Timing(0.2, 9.0), "h5py": Timing(0.1, 0.1)},
        {"outcome": "", "h5py": Timing(0.1, 0.1)},  # no writer measure
        {"outcome": "", "writer": Timing(0.2, 0.2), "h5py": Timing(0.1, 0.0)},
    ]
    ends = [{"outcome": "", "writer": Timing(0.1, 0.2)}] * 4 + [{"outcome": "x"}]
    ratios = paired(drains, ends, lambda d, _: d["writer"].cpu / d["h5py"].cpu)
    assert ratios == [pytest.approx(4.0), pytest.approx(1.0)]
    assert paired(drains, ends, lambda d, e: e["writer"].cpu / d["h5py"].cpu)[:2] == [
        pytest.approx(2.0), pytest.approx(2 / 3)]
    assert median_or_inf(ratios) == pytest.approx(2.5)
    assert median_or_inf([]) == float("inf")


def test_a_timed_baseline_gives_its_system_time_within_its_cpu_time():
    import os

    from tests.benchmarks.baselines import timed

    def work() -> None:
        for _ in range(2000):
            os.stat("/")  # a system call each
        sum(i * i for i in range(200_000))

    timing = timed(work)
    assert timing.sys is not None
    assert 0 <= timing.sys <= timing.cpu + 0.02  # two clocks, each to its own resolution
