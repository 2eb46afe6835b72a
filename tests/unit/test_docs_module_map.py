"""The module map of docs/internals.rst names every module of the packages it maps."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
MAPPED = ("data", "io", "subscribers", "simulation", "tuning")


def _module_map() -> dict[str, set[str]]:
    """The names in double backquotes given under each package of the map."""
    text = (ROOT / "docs" / "internals.rst").read_text()
    section = text.split("Module map\n----------\n", 1)[1].split("\n---", 1)[0]
    names: dict[str, set[str]] = {}
    package = None
    for line in section.splitlines():
        term = re.match(r"``nexus_writer_service\.(\w+)``", line)
        if term:
            package = term.group(1)
            names[package] = set()
        elif package is not None and line.startswith("    "):
            names[package].update(re.findall(r"``(\w+)``", line))
        elif line and not line.startswith(" "):
            package = None
    return names


def test_module_map_names_every_module_of_the_mapped_packages() -> None:
    mapped = _module_map()
    for package in MAPPED:
        modules = {path.stem for path in (ROOT / "nexus_writer_service" / package).glob("*.py")
                   if path.stem != "__init__"}
        missing = modules - mapped.get(package, set())
        assert not missing, (f"docs/internals.rst, Module map: nexus_writer_service.{package} "
                             f"does not name {sorted(missing)}")
