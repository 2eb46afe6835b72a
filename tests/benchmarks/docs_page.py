"""The benchmark's tables as a documentation page (``--write-docs docs/benchmarks.rst``).

The tables are kept exactly as the benchmark prints them (fixed-width text, one
literal block per scenario), so the page and a terminal show the same thing.
:class:`Recorder` copies what is printed to stdout while it records;
:func:`render_page` is pure: text in, reStructuredText out.
"""

from __future__ import annotations

import io
import sys
import textwrap
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from typing import Iterator, TextIO

COMMAND = "python -m tests.benchmarks --write-docs docs/benchmarks.rst"


@dataclass
class Section:
    title: str
    text: str


@dataclass
class Recorder:
    """Collects what is printed to stdout, one :class:`Section` per :meth:`section`.

    Printing still reaches the terminal: the recorder only keeps a copy.
    """

    sections: list[Section] = field(default_factory=list)

    @contextmanager
    def section(self, title: str) -> Iterator[None]:
        copy = io.StringIO()
        with redirect_stdout(_Tee(sys.stdout, copy)):
            try:
                yield
            finally:
                self.sections.append(Section(title, copy.getvalue()))


class _Tee(io.TextIOBase):
    def __init__(self, *streams: TextIO) -> None:
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()


def literal_block(text: str) -> list[str]:
    """``text`` as a reStructuredText literal block (blank lines around it trimmed)."""
    lines = [line.rstrip() for line in text.expandtabs().splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return ["(nothing printed)", ""]
    return ["::", ""] + [f"    {line}" if line else "" for line in lines] + [""]


def heading(title: str, underline: str) -> list[str]:
    title = " ".join(title.split())
    return [title, underline * len(title), ""]


def render_page(date: str, run: str, sections: list[Section], summary: str,
                machine: str | None = None, closing: str | None = None) -> str:
    """The page: intro, machine, summary table, then each scenario's tables.

    ``date`` is when the run was made, ``run`` says how (for example "full run of
    scenarios 1-8, medians of 5 repetitions"); ``closing`` is the benchmark's last
    words on problems seen, when known.
    """
    lines = heading("Benchmark results", "=")
    intro = (f"Results of {date}: {run}. This page is written by ``{COMMAND}``; run it "
             "again to update it. :doc:`performance` says what each scenario measures, how "
             "targets are judged and how much figures vary between runs.")
    lines += textwrap.wrap(intro, 88, break_on_hyphens=False, break_long_words=False) + [""]
    if machine:
        lines += literal_block(machine)
    lines += heading("Summary", "-")
    lines += literal_block(summary)
    if closing:
        lines += [" ".join(closing.split()), ""]
    for section in sections:
        lines += heading(section.title, "-")
        lines += literal_block(section.text)
    return "\n".join(lines).rstrip() + "\n"


def write_page(path: str, page: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
