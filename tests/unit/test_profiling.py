"""Resource profiling: the classic choices, one profiler at a time, and what it reports."""

from __future__ import annotations

import threading

import pytest

from nexus_writer_service.errors import NexusWriterError
from nexus_writer_service.profiling import Profiler, ResourceProfiling


def test_choices_are_the_classic_labels_in_their_order_with_kind_and_limit() -> None:
    assert [choice.name for choice in ResourceProfiling] == [
        "OFF", "CPU30", "CPU50", "CPU100", "WALL30", "WALL50", "WALL100",
        "MEM30", "MEM50", "MEM100"]
    assert [choice.value for choice in ResourceProfiling] == list(range(10))
    assert (ResourceProfiling.OFF.kind, ResourceProfiling.OFF.limit) == ("off", 0)
    assert (ResourceProfiling.CPU50.kind, ResourceProfiling.CPU50.limit) == ("cpu", 50)
    assert (ResourceProfiling.WALL100.kind, ResourceProfiling.WALL100.limit) == ("wall", 100)
    assert (ResourceProfiling.MEM30.kind, ResourceProfiling.MEM30.limit) == ("memory", 30)
    with pytest.raises(ValueError, match="OFF"):
        Profiler(ResourceProfiling.OFF)


def _busy_in_a_thread() -> None:
    def spin_for_the_profiler() -> int:
        return sum(i * i for i in range(200000))
    thread = threading.Thread(target=spin_for_the_profiler)
    thread.start()
    thread.join(30)


def test_cpu_profile_reports_functions_of_other_threads() -> None:
    profiler = Profiler(ResourceProfiling.CPU30)
    profiler.start()
    try:
        _busy_in_a_thread()
    finally:
        report = profiler.stop()
    assert report.startswith("cpu time, top 30 functions by total time (s):")
    assert "spin_for_the_profiler" in report, report
    assert len(report.splitlines()) <= 2 + 30
    assert profiler.stop() == "", "a second stop has nothing to report"


def test_memory_profile_reports_the_lines_holding_memory() -> None:
    profiler = Profiler(ResourceProfiling.MEM30)
    profiler.start()
    try:
        kept = [bytearray(1 << 20) for _ in range(4)]  # held by this line
    finally:
        report = profiler.stop()
    assert len(kept) == 4
    assert report.startswith("memory allocated at the peak: ")
    assert f"{__file__.rsplit('/', 1)[-1]}:" in report, report


def test_only_one_profiler_runs_at_a_time() -> None:
    first, second = Profiler(ResourceProfiling.WALL30), Profiler(ResourceProfiling.MEM30)
    first.start()
    try:
        with pytest.raises(NexusWriterError, match="another resource profiling"):
            second.start()
        assert not second.running
    finally:
        first.stop()
    second.start()
    assert second.stop().startswith("memory")
