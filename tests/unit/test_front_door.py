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


def test_every_console_script_resolves_to_a_callable():
    """The commands the README names exist and point at importable functions."""
    import configparser
    import importlib

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = dict(
        line.split(" = ", 1)
        for line in config["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    for name in ("nexus-writer-demo", "NexusWriterService", "RegisterNexusWriter",
                 "NexusSessionWriter"):
        assert name in scripts, name
        assert name in (ROOT / "README.rst").read_text(), name
    for target in scripts.values():
        module, func = target.strip().split(":")
        assert callable(getattr(importlib.import_module(module), func)), target
