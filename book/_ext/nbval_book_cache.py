"""The chapters under nbval, and their outputs for the book, from one execution.

``make test`` runs every chapter exactly once, under nbval (``--nbval-lax``: a cell that
raises -- a hidden check included -- fails its test). With ``--book-cache DIR`` this plugin
also records each cell's kernel messages, replays them through nbclient's own message
handling (the code myst-nb's execution goes through: outputs, ``clear_output``, display
updates, widget state) and stores the executed chapter in the jupyter-cache at ``DIR``.
``jupyter-book build`` (``execute_notebooks: cache`` in ``_config.yml``) then renders the
chapter from there instead of running it a second time. A chapter with a failed or skipped
cell is not stored, so a build would execute it itself.

Two differences from an nbclient run, both irrelevant to what the book renders: nbval sends
cells with ``store_history=False`` (execution counts are renumbered here as nbclient numbers
them), and no frontend echoed ``Output``-widget state back to the kernel during the run
(the chapters' panels assign ``Output.outputs`` from the kernel side, which needs no echo).
``tests/test_book_cache.py`` checks the replay against nbclient on a notebook that uses every
kind of output.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import nbformat
import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--book-cache",
        metavar="DIR",
        help="store each chapter that passes under nbval in the jupyter-cache at DIR, "
        "for `jupyter-book build` to render without executing it again",
    )


def pytest_configure(config):
    if config.getoption("--book-cache", default=None):
        # the chapters' kernels (started later, inheriting this environment) run for the book,
        # as under `jupyter-book build` (book/_ext/offline_assets.py sets the same variable):
        # figures are emitted as the static pages need them
        from sharpness_lib.renderer import BUILD_ENV_VAR

        os.environ[BUILD_ENV_VAR] = "1"


class _Recording:
    """The iopub messages of one chapter's cells, by cell index, while nbval runs it."""

    def __init__(self, path: Path, nb):
        self.path, self.nb = path, nb
        self.messages: dict[int, list[dict]] = {}
        self.complete = True
        self.start = time.monotonic()


_recordings: dict[Path, _Recording] = {}


def _recording(item) -> _Recording | None:
    """The recording ``item`` belongs to, if it is an nbval cell and --book-cache is on."""
    if not item.config.getoption("--book-cache") or not hasattr(item, "cell_num"):
        return None
    path = Path(str(item.parent.fspath)).resolve()
    if path not in _recordings:
        _recordings[path] = _Recording(path, item.parent.nb)
    return _recordings[path]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    rec = _recording(item)
    if rec is None:
        return (yield)
    kernel = item.parent.kernel
    sent, seen = [], []
    execute, get_message = kernel.execute_cell_input, kernel.get_message

    def recording_execute(*args, **kwargs):
        sent.append(execute(*args, **kwargs))
        return sent[-1]

    def recording_get_message(stream, timeout=None):
        msg = get_message(stream, timeout=timeout)
        if stream == "iopub":
            seen.append(msg)
        return msg

    # nbval reads every message through these two kernel methods (instance attributes
    # shadow the class's; deleting them restores it)
    kernel.execute_cell_input = recording_execute
    kernel.get_message = recording_get_message
    try:
        return (yield)
    finally:
        del kernel.execute_cell_input, kernel.get_message
        index = next(i for i, c in enumerate(rec.nb.cells) if c is item.cell)
        rec.messages[index] = [
            m for m in seen if sent and m["parent_header"].get("msg_id") == sent[0]
        ]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    rec = _recording(item)
    if rec is not None and (report.failed or report.skipped):
        rec.complete = False
    return report


def pytest_runtest_teardown(item, nextitem):
    rec = _recording(item)
    last_of_file = nextitem is None or nextitem.parent is not item.parent
    if rec is None or not last_of_file:
        return
    del _recordings[rec.path]
    if rec.complete:
        store(
            item.config.getoption("--book-cache"),
            rec.path,
            executed_notebook(rec.nb, rec.messages),
            time.monotonic() - rec.start,
        )


class _NoFrontendEcho:
    """Stands in for the kernel client of nbclient's Output-widget mimic, which sends the
    widget's state back to the kernel; the run is over, there is no kernel to send it to."""

    class _Channel:
        def send(self, msg):
            pass

    def __init__(self):
        from jupyter_client.session import Session

        self.session, self.shell_channel = Session(), self._Channel()


def executed_notebook(nb, messages: dict[int, list[dict]]):
    """``nb`` with the outputs, execution counts and widget state nbclient would have
    produced from the same kernel ``messages`` (iopub, by cell index)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionComplete

    nb = copy.deepcopy(nb)
    client = NotebookClient(nb, record_timing=False)
    client.kc = _NoFrontendEcho()
    count = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if not cell.source.strip():  # nbclient does not execute empty cells
            continue
        count += 1
        client.clear_before_next_output = False
        for msg in copy.deepcopy(messages[index]):
            try:
                client.process_message(msg, cell, index)
            except CellExecutionComplete:
                break
        cell.execution_count = count
        for out in cell.outputs:
            if out.output_type == "execute_result":
                out.execution_count = count
    client.set_widgets_metadata()
    return nb


def store(cache_dir: str, path: Path, nb, seconds: float) -> None:
    """Put the executed ``nb`` of chapter ``path`` into the jupyter-cache at ``cache_dir``,
    then check that the chapter as myst-nb reads it matches the stored entry."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(cache_dir)
    cache.cache_notebook_bundle(
        CacheBundleIn(nb, str(path), data={"execution_seconds": seconds}),
        check_validity=False,
        overwrite=True,
    )
    try:
        cache.match_cache_notebook(nbformat.read(path, as_version=4))
    except KeyError:
        raise RuntimeError(
            f"{path.name} was stored in the book cache but does not match it when re-read; "
            "the book build would execute it again"
        ) from None
