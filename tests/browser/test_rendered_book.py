"""Render the built book in headless Chromium with no network and check what a reader sees.

Runs only when ``_build/html`` exists (``make book`` first) and Chromium is installed
(``apt-get install -y chromium``); otherwise skipped. Screenshots go to ``test-artifacts/``.

Per page: no console errors, no uncaught JS errors, no request leaving 127.0.0.1; MathJax typeset
the math; on chapters with figures, plotly drew SVG traces; on chapters with widgets, the
ipywidgets HTML manager rendered the views.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")

pytestmark = [
    pytest.mark.skipif(not (HTML / "index.html").is_file(), reason="book not built (make book)"),
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="chromium not installed"),
]

# Flags from TOOLCHAIN.md; the resolver rule makes any non-IP host unreachable.
CHROME_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
]

# (page, expects plotly figures, expects widgets)
PAGES = [
    ("book/intro.html", False, False),
    ("book/setup.html", True, True),
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        yield b
        b.close()


def _open(browser, url):
    """Load url; return (page, problems) where problems lists console errors, JS exceptions,
    failed requests and any request that tried to leave 127.0.0.1 (those are aborted)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"requestfailed: {r.url}"))

    def guard(route):
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith("data:") or host == "127.0.0.1":
            route.continue_()
        else:
            problems.append(f"external request: {route.request.url}")
            route.abort()

    page.route("**/*", guard)
    page.goto(url, wait_until="load")
    return page, problems


@pytest.mark.parametrize("path,has_plotly,has_widgets", PAGES)
def test_page_renders_offline(server, browser, path, has_plotly, has_widgets):
    assert (HTML / path).is_file(), f"{path} missing from the build"
    page, problems = _open(browser, f"{server}/{path}")
    try:
        # MathJax 3 typesets asynchronously; wait for its startup promise.
        page.wait_for_function(
            "window.MathJax && MathJax.startup && MathJax.startup.promise"
            " && MathJax.startup.promise.then(() => true)", timeout=30_000)
        assert page.locator("mjx-container").count() > 0, "no MathJax output on the page"
        assert page.locator(".math").count() == page.locator(".math mjx-container").count(), (
            "some math was not typeset")

        if has_plotly:
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
            traces = page.locator(".js-plotly-plot .scatterlayer .trace").count()
            assert traces > 0, "plotly figure has no drawn traces"
        if has_widgets:
            page.wait_for_selector(".jupyter-widgets.widget-slider, .widget-slider", timeout=30_000)
            # the ControlPanel (an Output widget holding a plotly figure) rendered too
            page.wait_for_selector(".widget-button", timeout=30_000)
            page.wait_for_selector(".widget-output .js-plotly-plot .main-svg", timeout=30_000)
        page.wait_for_timeout(500)  # let late errors surface
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / (path.replace("/", "_") + ".png")), full_page=True)
        assert not problems, "\n".join(problems)
    finally:
        page.close()


@pytest.mark.parametrize("path", [p for p, *_ in PAGES])
def test_page_size(path):
    """Chapters must stay small: plotly.js is served once, never inlined."""
    size = (HTML / path).stat().st_size
    assert size < 3_000_000, f"{path} is {size / 1e6:.2f} MB (limit 3 MB)"
    assert "window.PlotlyConfig" not in (HTML / path).read_text(errors="ignore") or size < 1e6
