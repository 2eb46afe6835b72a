"""README.rst and .ci/run agree: CI runs exactly the documented test command."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parents[2]


def _readme_commands() -> list[str]:
    lines = (ROOT / "README.rst").read_text().splitlines()
    return [line.strip() for line in lines[:12] if line.startswith("    python3 -m venv")]


def test_readme_starts_with_demo_and_test_commands():
    demo, tests = _readme_commands()
    assert demo.endswith("nexus-writer-demo")
    assert tests.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command():
    _, tests = _readme_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines
