"""Sphinx configuration of the nexus-writer-service documentation.

Built in CI with warnings as errors::

    sphinx-build -W -q -b html docs docs/_build/html

API pages come from the docstrings (autodoc imports the packages; nothing is
started at import, so the build needs no server).
"""

from __future__ import annotations

import os
import sys

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

sys.path.insert(0, os.path.abspath(".."))

project = "nexus-writer-service"
author = "nexus-writer-service developers"
copyright = "nexus-writer-service developers"
release = version = "0.1.0"

extensions = ["sphinx.ext.autodoc"]

root_doc = master_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True, "undoc-members": True}


def _qualify_raised_errors(app, what, name, obj, options, lines):
    """Point ``:raises Name:`` at the error of the documented object's own package.

    ``channels.errors`` and ``nexus_writer_service.errors`` share class names (both
    packages have a ``ConfigurationError``, for example), so a bare name in a
    ``:raises:`` field would be ambiguous to Sphinx.
    """
    import importlib

    package = name.split(".", 1)[0]
    try:
        errors = importlib.import_module(f"{package}.errors")
    except ImportError:
        return
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if not stripped.startswith(":raises "):
            continue
        head, sep, rest = stripped[len(":raises "):].partition(":")
        error = head.strip()
        if sep and error.isidentifier() and isinstance(getattr(errors, error, None), type):
            indent = line[:len(line) - len(stripped)]
            lines[i] = f"{indent}:raises ~{package}.errors.{error}:{rest}"


def _default_text(name, value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(value) or "(empty)"
    if name == "file_mode":
        return f"{value:o} (octal)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class SaveOptionsTable(SphinxDirective):
    """``.. save-options::``: every save option with its default and help, from the code."""

    def run(self):
        import dataclasses

        from nexus_writer_service.io.options import SaveOptions, option_help

        helps = option_help()
        defaults = SaveOptions()
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 25 15 60", "",
                 "   * - option", "     - default", "     - meaning"]
        for option in dataclasses.fields(SaveOptions):
            default = _default_text(option.name, getattr(defaults, option.name))
            lines += [f"   * - ``{option.name}``", f"     - {default}",
                      f"     - {helps[option.name]}"]
        node = nodes.Element()
        self.state.nested_parse(StringList(lines, source="save-options"), 0, node)
        return node.children


def setup(app):
    app.connect("autodoc-process-docstring", _qualify_raised_errors)
    app.add_directive("save-options", SaveOptionsTable)
