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
    for option in ("--quick", "--scenario", "--repeat", "--redis-url", "--mca-seconds",
                   "--big", "--blisswriter"):
        assert option in result.stdout
    for number in range(1, 14):
        assert f"  {number}. " in result.stdout


def test_benchmark_rejects_an_unknown_scenario():
    result = subprocess.run([sys.executable, "-m", "tests.benchmarks", "--scenario", "14"],
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


def test_benchmark_can_write_its_tables_to_a_docs_page():
    result = subprocess.run([sys.executable, "-m", "tests.benchmarks", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert "--write-docs PATH" in result.stdout


def test_recorded_tables_are_printed_and_kept_per_section(capsys):
    from tests.benchmarks.docs_page import Recorder

    recorder = Recorder()
    with recorder.section("Scenario 1: one"):
        print("table one")
    print("between")
    with pytest.raises(RuntimeError):
        with recorder.section("Scenario 2: two"):
            print("half a table")
            raise RuntimeError("scenario failed")
    assert capsys.readouterr().out == "table one\nbetween\nhalf a table\n"
    assert [(s.title, s.text) for s in recorder.sections] == [
        ("Scenario 1: one", "table one\n"), ("Scenario 2: two", "half a table\n")]


def test_the_docs_page_holds_every_table_as_printed():
    from tests.benchmarks.docs_page import Section, render_page

    summary = "\nSummary\nscenario  result\n----------------\n1 drain      met\n"
    table = "1. 0D: 10 channels\nmeasure  wall s\n(a) disk   0.270\n\n(b) raw  0.223\n"
    page = render_page("2026-11-22", "full run of scenarios 1, 2", [
        Section("Scenario 1: 0D: 10 channels x 1e6 float64", table),
        Section("Scenario 2: many channels", "")], summary,
        machine="machine: 2 CPUs", closing="No writer problem seen.")
    lines = page.splitlines()
    assert lines[:2] == ["Benchmark results", "================="]
    assert "Results of 2026-11-22: full run of scenarios 1, 2." in page
    for title in ("Summary", "Scenario 1: 0D: 10 channels x 1e6 float64",
                  "Scenario 2: many channels"):
        at = lines.index(title)
        assert set(lines[at + 1]) == {"-"} and len(lines[at + 1]) == len(title)
    for line in table.splitlines() + summary.splitlines()[1:]:
        assert not line or f"    {line}" in lines
    assert "(nothing printed)" in page and "No writer problem seen." in page


def test_the_docs_page_is_valid_restructured_text():
    docutils_core = pytest.importorskip("docutils.core")
    from tests.benchmarks.docs_page import Section, render_page

    page = render_page("2026-11-22", "quick run", [Section("Scenario 8: latency -> x", "a\nb")],
                       "Summary\nx  y\n", machine="machine: 2 CPUs")
    page = page.replace(":doc:`performance`", "the performance page")  # Sphinx-only role
    docutils_core.publish_doctree(page, settings_overrides={"halt_level": 2,
                                                            "report_level": 2})
