"""The chapters in a real JupyterLab (from the venv) with a live kernel, driven by headless Chromium.

* every chapter's markdown (all of it in one notebook) renders through jupyterlab-myst: no raw MyST (`{ref}`, `:::{exercise}`,
  `(label)=`, `:label:` lines, `$...$`) visible as text;
* a chapter's solution code is folded (JupyterLab's collapsed input), as on the page;
* the playground: run all cells (no error output), press Run (the plot gains points live), change
  a control (the run follows it), Stop (the partial curve stays, the label drops its ETA).

Isolation, so a fresh clone behaves like this machine: JupyterLab listens on 127.0.0.1 at a free
port with no token; its config, data, runtime and IPython dirs and its user-settings and
workspaces dirs are fresh temporary folders (nothing from ~/.jupyter); the notebooks are COPIES in
a temporary root dir (JupyterLab marks an opened notebook modified, so an autosave must never
reach the repository). Settings used: windowingMode "none" (the default "contentVisibility"
leaves off-screen cells unrendered), no autosave, no news/update checks.

Every wait is capped at 60 s and the whole file at ``BUDGET`` seconds, so a hang fails quickly
with a screenshot in ``test-artifacts/`` instead of eating CI's time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
# Seconds for the whole file (server start included); ~1 min on an idle 2-core machine. A
# developer machine shared with other heavy jobs may raise it (JUPYTERLAB_TEST_BUDGET=600).
BUDGET = float(os.environ.get("JUPYTERLAB_TEST_BUDGET", 180))
WAIT_MS = 60_000  # cap of any single wait
_T0: list[float] = []  # set when the server starts

# MyST that must never show as text in a rendered markdown cell.
RAW_MYST = [
    (re.compile(r"\{[a-z][\w:-]*\}`"), "a role such as {ref}`...`"),
    (re.compile(r"(:::|```)\s*\{"), "a directive fence such as :::{exercise}"),
    (re.compile(r"^\([\w-]+\)=\s*$", re.M), "a target label such as (scenario2)="),
    (re.compile(r"^:(label|class|nonumber|name):", re.M), "a directive option line"),
    (re.compile(r"\$\$|(?<![\\$])\$[^$\s][^$\n]*\$"), "unrendered $...$ maths"),
]

SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {
        "checkForUpdates": False,
        "fetchNews": "false",
    },
}


def _chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc["chapters"]]


def _ms() -> float:
    """Timeout for the next wait: at most WAIT_MS, never past the file's budget."""
    left = BUDGET - (time.monotonic() - (_T0[0] if _T0 else time.monotonic()))
    if left <= 1:
        pytest.fail(f"the JupyterLab tests ran past their {BUDGET:.0f} s budget")
    return min(WAIT_MS, left * 1000)


def _shot(page, name: str) -> None:
    """Screenshot for people to look at; a slow one is skipped, it is not the test."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.screenshot(path=str(ARTIFACTS / f"jupyterlab-{name}.png"), timeout=10_000)
    except PlaywrightTimeout:
        pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Base URL of a JupyterLab serving copies of the chapters, isolated from ~/.jupyter."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it with `apt-get install "
            "chromium` (make test does this when run as root) or set CHROMIUM=/path."
        )
    _T0.append(time.monotonic())
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "root"
    shutil.copytree(
        ROOT / "book",
        root / "book",
        ignore=shutil.ignore_patterns("_ext", "_vendor", ".ipynb_checkpoints"),
    )
    # One notebook with every chapter's markdown (cells of .md pages included), each chapter
    # after a marker cell: opening it once costs far less than opening eleven notebooks, and
    # the code cells' editors and kernels test nothing about the MyST.
    cells = []
    for chapter in _chapters():
        cells.append(
            {"cell_type": "markdown", "metadata": {}, "source": f"CHAPTER {chapter}"}
        )
        md, nb = ROOT / f"{chapter}.md", ROOT / f"{chapter}.ipynb"
        if md.is_file():
            cells.append(
                {"cell_type": "markdown", "metadata": {}, "source": md.read_text()}
            )
        else:
            cells += [
                {"cell_type": "markdown", "metadata": {}, "source": c["source"]}
                for c in json.loads(nb.read_text())["cells"]
                if c["cell_type"] == "markdown"
            ]
    (root / "book" / "_all_markdown.ipynb").write_text(
        json.dumps(
            {
                "cells": cells,
                "metadata": {
                    "kernelspec": {
                        "name": "python3",
                        "language": "python",
                        "display_name": "Python 3",
                    }
                },
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    for plugin, values in SETTINGS.items():
        f = tmp / "settings" / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    env = dict(os.environ)
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
    ):
        env[var] = str(tmp / sub)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp / "jupyterlab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.allow_root=True",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={tmp / 'settings'}",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        # window.jupyterapp: run cells and read outputs through JupyterLab's own API
        "--LabApp.expose_app_in_browser=True",
    ]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + _ms() / 1000
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    "JupyterLab exited at start:\n" + log_path.read_text()[-3000:]
                )
            try:
                urllib.request.urlopen(f"{base}/api/status", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        "JupyterLab did not answer within its timeout:\n"
                        + log_path.read_text()[-3000:]
                    )
                time.sleep(0.3)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)  # the server shuts its kernels down
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of ours still left (kernels)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def lab_page(lab, browser):
    """One JupyterLab page for all tests (loading JupyterLab is the slow part); chapters are
    opened in it one after another. Yields (page, problems) with uncaught JS errors."""
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    # (a kernel shut down by _stop_kernels while still starting cancels its pending requests)
    page.on(
        "pageerror",
        lambda e: "Canceled future" in str(e) or problems.append(f"pageerror: {e}"),
    )
    page.goto(
        f"{lab}/lab/workspaces/test?reset", wait_until="domcontentloaded", timeout=_ms()
    )
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.restored.then(() => true)",
        timeout=_ms(),
    )
    yield page, problems
    page.close()


def _stop_kernels(page) -> None:
    """Shut down every kernel session (each opened notebook starts one)."""
    page.evaluate("() => window.jupyterapp.serviceManager.sessions.shutdownAll()")


def _open(page, path: str) -> None:
    """Close every tab, then open a notebook and wait until all its markdown is rendered
    (windowingMode "none" attaches every cell)."""
    # JupyterLab marks a notebook modified as soon as it opens it: dispose of the tabs
    # directly (close-all would stop at a "Save your work" dialog; nothing is ever saved)
    page.evaluate("""() => { for (const w of Array.from(window.jupyterapp.shell.widgets('main'))) {
        if (w.context) w.context.model.dirty = false;
        w.dispose(); } }""")
    page.wait_for_function(
        "() => !document.querySelector('.jp-Notebook, .jp-MarkdownViewer')",
        timeout=_ms(),
    )
    page.evaluate(
        "p => { window.jupyterapp.commands.execute('docmanager:open', {path: p}); }",
        path,
    )
    # jupyterlab-myst renders each markdown cell into a `.myst` element
    page.wait_for_function(
        """() => {
        const md = document.querySelectorAll('.jp-Notebook .jp-MarkdownCell');
        return md.length > 0 && Array.from(md).every(
            c => c.classList.contains('jp-mod-rendered') && c.querySelector('.myst'));
    }""",
        timeout=_ms(),
    )


def _raw_myst_in(text: str) -> list[str]:
    bad = []
    for pattern, what in RAW_MYST:
        m = pattern.search(text)
        if m:
            start = max(m.start() - 40, 0)
            bad.append(f"{what}: ...{text[start : m.end() + 40]!r}...")
    return bad


def _raw_myst(page) -> list[str]:
    """Rendered markdown cells that still show MyST source as text."""
    texts = page.evaluate("""() => Array.from(document.querySelectorAll(
        '.jp-Notebook .jp-MarkdownCell.jp-mod-rendered .jp-Cell-inputWrapper'))
        .map(e => e.innerText)""")
    return [b for t in texts for b in _raw_myst_in(t)]


def test_every_chapter_markdown_renders_without_raw_myst(lab, lab_page):
    page, problems = lab_page
    problems.clear()
    try:
        _open(page, "book/_all_markdown.ipynb")
        page.wait_for_timeout(500)  # maths typesets right after the markdown
        _shot(page, "all-markdown")
        texts = page.evaluate("""() => Array.from(document.querySelectorAll(
            '.jp-Notebook .jp-MarkdownCell .jp-Cell-inputWrapper')).map(e => e.innerText)""")
        chapter, bad = "?", []
        for text in texts:
            if text.strip().startswith("CHAPTER "):
                chapter = text.strip().split()[1]
                continue
            bad += [f"{chapter}: {b}" for b in _raw_myst_in(text)]
        assert chapter == _chapters()[-1], f"only rendered up to {chapter}"
        assert not bad, "raw MyST in JupyterLab:\n" + "\n".join(bad)
        assert not problems, "\n".join(problems)
    except Exception:
        _shot(page, "all-markdown-failure")
        raise
    finally:
        _stop_kernels(page)


def test_solutions_are_folded_in_a_chapter(lab, lab_page):
    # the page folds solutions with sphinx-exercise; in JupyterLab the solution's code cells
    # carry jupyter.source_hidden (tests/test_chapter_helpers.py), shown as a placeholder
    page, problems = lab_page
    problems.clear()
    cells = json.loads((ROOT / "book" / "scenario1.ipynb").read_text())["cells"]
    hidden = sum(
        1
        for c in cells
        if c["cell_type"] == "code"
        and c["metadata"].get("jupyter", {}).get("source_hidden")
    )
    assert hidden, "scenario1 has no folded solution code"
    try:
        _open(page, "book/scenario1.ipynb")
        placeholders = page.locator(".jp-CodeCell .jp-InputPlaceholder")
        placeholders.first.scroll_into_view_if_needed(timeout=_ms())
        _shot(page, "scenario1-solution-folded")
        assert placeholders.count() == hidden
        assert not problems, "\n".join(problems)
    except Exception:
        _shot(page, "scenario1-solution-failure")
        raise
    finally:
        _stop_kernels(page)


# ------------------------------------------------------------------------------ playground
_POINTS = """() => {
    // epochs drawn for "your run" on the first panel of the panel's figure (0 if not drawn)
    let x = [];
    for (const gd of document.querySelectorAll('.widget-output .js-plotly-plot'))
        for (const t of gd._fullData || [])
            if (t.meta && t.meta.label === 'your run' && t.xaxis === 'x' && t.x) x = Array.from(t.x);
    return x;
}"""
_CUT_OFF = """() => {
    const status = document.querySelector('.panel-status');
    let panel = status.closest('.widget-vbox');
    while (panel.parentElement.closest('.widget-vbox')) panel = panel.parentElement.closest('.widget-vbox');
    const area = panel.closest('.jp-OutputArea-output').getBoundingClientRect();
    const out = [];
    for (const e of panel.querySelectorAll(
            '.widget-inline-hbox, .widget-button, .widget-label, .progress, .widget-dropdown')) {
        const r = e.getBoundingClientRect();
        if (r.width > 0 && (r.right > area.right + 1 || r.left < area.left - 1))
            out.push((e.innerText || e.className).slice(0, 30) + ' right=' + Math.round(r.right)
                     + ' > ' + Math.round(area.right));
    }
    return out;
}"""
_STATUS = """() => { const s = document.querySelector('.panel-status');
                     return s ? s.dataset.status : null; }"""
_ERRORS = """() => {
    const nb = window.jupyterapp.shell.currentWidget.content;
    const out = [];
    for (const cell of nb.widgets) {
        if (cell.model.type !== 'code') continue;
        if (cell.model.executionCount === null) out.push('not executed: ' + cell.model.sharedModel.source.slice(0, 80));
        for (const o of cell.model.outputs.toJSON())
            if (o.output_type === 'error') out.push(o.ename + ': ' + o.evalue);
    }
    return out;
}"""


def _wait_status(page, *statuses: str) -> str:
    page.wait_for_function(
        f"() => {json.dumps(list(statuses))}.includes(({_STATUS})())", timeout=_ms()
    )
    return page.evaluate(_STATUS)


def _set_int(page, label: str, value: int) -> None:
    box = page.locator(f".widget-inline-hbox:has(label:text-is('{label}')) input")
    box.fill(str(value))
    box.press("Enter")  # IntText syncs to the kernel on Enter/blur


def test_playground_panel_in_a_live_kernel(lab, lab_page):
    page, problems = lab_page
    problems.clear()
    try:
        _open(page, "book/playground.ipynb")
        page.wait_for_function(
            """() => { const w = window.jupyterapp.shell.currentWidget;
            const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
            return k && k.status === 'idle'; }""",
            timeout=_ms(),
        )
        page.evaluate(
            "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"
        )
        # run-all ends when no prompt shows [*] and the kernel is idle again
        page.wait_for_function(
            """() => {
            const w = window.jupyterapp.shell.currentWidget;
            const busy = Array.from(document.querySelectorAll('.jp-InputPrompt'))
                .some(p => p.innerText.includes('*'));
            return !busy && w.sessionContext.session.kernel.status === 'idle'
                && w.content.widgets.every(c => c.model.type !== 'code'
                                              || c.model.executionCount !== null);
        }""",
            timeout=_ms(),
        )
        errors = page.evaluate(_ERRORS)
        _shot(page, "playground-run-all")
        assert not errors, "cells failed in JupyterLab:\n" + "\n".join(errors)

        # 1024 px wide with the file browser open: every control of the panel is fully inside
        # the panel and the notebook (the grid wraps instead of cutting a column off)
        page.set_viewport_size({"width": 1024, "height": 900})
        page.wait_for_timeout(500)
        cut = page.evaluate(_CUT_OFF)
        _shot(page, "playground-1024px")
        assert not cut, f"panel parts cut off at 1024 px: {cut}"

        run = page.locator("button.widget-button", has_text="Run")
        stop = page.locator("button.widget-button", has_text="Stop")
        run.scroll_into_view_if_needed()
        assert page.evaluate(_POINTS) == [], "'your run' drawn before Run"

        # 1. default Run: points arrive while it runs, the run completes
        t0 = time.monotonic()
        run.click()
        page.wait_for_function(f"() => ({_POINTS})().length > 0", timeout=_ms())
        first = len(page.evaluate(_POINTS))
        assert (
            _wait_status(page, "completed", "diverged", "error", "invalid")
            == "completed"
        ), page.locator(".panel-status").inner_text()
        seconds = time.monotonic() - t0
        default_x = page.evaluate(_POINTS)
        print(
            f"default Run in JupyterLab: {seconds:.1f} s, {len(default_x)} points "
            f"(first draw {first})"
        )
        assert len(default_x) > first, "the plot did not gain points during the run"
        _shot(page, "playground-default-run")

        # 2. a changed control changes the run
        _set_int(page, "epochs", 300)
        run.click()
        _wait_status(page, "running")
        assert (
            _wait_status(page, "completed", "diverged", "error", "invalid")
            == "completed"
        )
        # the status label can change before the final redraw reaches the figure
        page.wait_for_function(
            f"() => ({_POINTS})().slice(-1)[0] === 300", timeout=_ms()
        )
        assert page.evaluate(_POINTS)[-1] == 300 != default_x[-1]
        assert (
            "epoch 300/300" in page.locator(".widget-label").all_inner_texts().__str__()
        )

        # 3. Stop keeps the partial curve, and the label loses its ETA
        _set_int(page, "epochs", 200_000)
        run.click()
        page.wait_for_function(f"() => ({_POINTS})().length > 2", timeout=_ms())
        stop.click()
        assert _wait_status(page, "stopped", "completed") == "stopped"
        page.wait_for_timeout(700)  # the final redraw
        x = page.evaluate(_POINTS)
        assert x and 0 < x[-1] < 200_000, x[-3:]
        labels = " ".join(page.locator(".widget-label").all_inner_texts())
        assert "ETA" not in labels, labels
        _shot(page, "playground-stopped")

        assert not page.evaluate(_ERRORS), "error output after using the panel"
        bad = _raw_myst(page)
        assert not bad, "raw MyST in the playground:\n" + "\n".join(bad)
        assert not problems, "\n".join(problems)
    except Exception:
        _shot(page, "playground-failure")
        raise
    finally:
        _stop_kernels(page)
