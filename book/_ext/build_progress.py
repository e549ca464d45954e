"""Sphinx extension: progress and remaining-time estimate while the book's chapters execute.

myst-nb executes each notebook while Sphinx reads it (unless `make test` already stored its
outputs in the execution cache), which is where a build spends nearly all of its time. Before
each document is read this prints one line::

    [book 3/8] reading book/scenario2 -- 1m12s elapsed, about 2m05s left

The estimate uses the durations recorded by the previous executing build on this machine
(``.book_timings.json`` at the repository root, ignored by git) and, for chapters without a
record, the average over the chapters read so far.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

TIMINGS = Path(__file__).resolve().parents[2] / ".book_timings.json"
_CACHED_READ_S = 3.0  # a notebook read faster than this came from the execution cache


def _fmt(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class _Progress:
    def __init__(self):
        self.docs: list[str] = []
        self.done: dict[str, float] = {}
        self.current: tuple[str, float] | None = None
        self.notebooks: set[str] = set()
        self.start = time.monotonic()
        try:
            self.previous = json.loads(TIMINGS.read_text())
        except (OSError, ValueError):
            self.previous = {}

    def _finish_current(self):
        if self.current is not None:
            doc, t0 = self.current
            self.done[doc] = time.monotonic() - t0
            self.current = None

    def _remaining(self) -> float:
        avg = sum(self.done.values()) / len(self.done) if self.done else 10.0
        return sum(self.previous.get(d, avg) for d in self.docs if d not in self.done)

    def before_read(self, app, env, docnames):
        self.docs = sorted(docnames)

    def source_read(self, app, docname, source):
        self._finish_current()
        if docname not in self.docs:
            return
        index = len(self.done) + 1
        elapsed = time.monotonic() - self.start
        print(
            f"[book {index}/{len(self.docs)}] reading {docname} -- {_fmt(elapsed)} elapsed, "
            f"about {_fmt(self._remaining())} left",
            file=sys.stderr,
            flush=True,
        )
        if str(app.env.doc2path(docname)).endswith(".ipynb"):
            self.notebooks.add(docname)
        self.current = (docname, time.monotonic())

    def after_read(self, app, env):
        self._finish_current()
        if self.done:
            try:
                # a notebook rendered from the execution cache (about a second) says nothing
                # about how long executing it takes: only executed durations go on record
                done = {
                    d: t
                    for d, t in self.done.items()
                    if d not in self.notebooks or t > _CACHED_READ_S
                }
                TIMINGS.write_text(json.dumps({**self.previous, **done}, indent=1))
            except OSError:
                pass
            print(
                f"[book] all {len(self.done)} chapters read in "
                f"{_fmt(time.monotonic() - self.start)}",
                file=sys.stderr,
                flush=True,
            )


def setup(app):
    progress = _Progress()
    app.connect("env-before-read-docs", progress.before_read)
    app.connect("source-read", progress.source_read)
    app.connect("env-updated", lambda app, env: progress.after_read(app, env))
    return {"parallel_read_safe": False, "parallel_write_safe": True, "version": "1"}
