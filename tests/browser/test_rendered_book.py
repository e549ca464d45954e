"""Render the built book in headless Chromium with no network and check what a reader sees.

Needs ``_build/html`` (``make book``) and Debian's Chromium (``make test`` installs it when run
as root); without either the tests FAIL with a sentence saying how to get it, they never skip.
Screenshots of every page go to ``test-artifacts/``.

Pages come from ``_toc.yml``. Per page: no console errors (beyond ``CONSOLE_ALLOW``), no uncaught
JS errors, no request leaving 127.0.0.1; MathJax typeset all math; every plotly figure drew SVG
traces; chapters built from notebooks with widgets show their widget views; no paragraph starts
with `|` (a Markdown table rendered as text) and every table has rows with one cell per header;
no code cell scrolls sideways; every internal link points to a page (and anchor) of the build.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")

# Console messages that are not ours to fix; keep this list short and explained.
CONSOLE_ALLOW: tuple[str, ...] = ()

# Flags from TOOLCHAIN.md; the resolver rule makes any non-IP host unreachable.
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


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            for part in e.get("parts", []) if isinstance(e, dict) else []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


def _has_widgets(source: str) -> bool:
    """A notebook chapter whose cells create ipywidgets (the panel or any widget)."""
    nb = ROOT / f"{source}.ipynb"
    if not nb.is_file():
        return False
    cells = json.loads(nb.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return bool(re.search(r"training_panel|ControlPanel|ipywidgets", code))


PAGES = [(f"{src}.html", _has_widgets(src)) for src in _toc_files()]


@pytest.fixture(scope="session", autouse=True)
def _prerequisites():
    if not (HTML / "index.html").is_file():
        pytest.fail("the book is not built: run `make book` first (make test does it).")
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it with `apt-get install "
            "chromium` (make test does this when run as root) or set CHROMIUM=/path."
        )


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
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        yield b
        b.close()


def _open(browser, url):
    """Load url; return (page, problems) where problems lists console errors, JS exceptions,
    failed requests and any request that tried to leave 127.0.0.1 (those are aborted)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems: list[str] = []
    page.on(
        "console", lambda m: m.type == "error" and problems.append(f"console: {m.text}")
    )
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


def _allowed(problem: str) -> bool:
    return any(a in problem for a in CONSOLE_ALLOW)


@pytest.mark.parametrize("path,has_widgets", PAGES)
def test_page_renders_offline(server, browser, path, has_widgets):
    assert (HTML / path).is_file(), f"{path} missing from the build"
    page, problems = _open(browser, f"{server}/{path}")
    try:
        # MathJax 3 typesets asynchronously; wait for its startup promise (Sphinx loads
        # MathJax only on pages with math, e.g. not on the References page)
        if page.locator(".math").count():
            page.wait_for_function(
                "window.MathJax && MathJax.startup && MathJax.startup.promise"
                " && MathJax.startup.promise.then(() => true)",
                timeout=30_000,
            )
        assert (
            page.locator(".math").count() == page.locator(".math mjx-container").count()
        ), "some math was not typeset"
        figures = page.locator(".plotly-graph-div").count()
        if figures:
            page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {figures}",
                timeout=60_000,
            )
            drawn = page.evaluate("""() => Array.from(document.querySelectorAll('.plotly-graph-div'))
                .filter(d => d.querySelector('.main-svg') &&
                        d.querySelectorAll('.scatterlayer .trace, .barlayer .trace, .heatmaplayer .hm, .trace').length > 0).length""")
            assert drawn == figures, (
                f"only {drawn} of {figures} plotly figures drew traces"
            )
        if has_widgets:
            page.wait_for_selector(".widget-button", timeout=30_000)
            page.wait_for_selector(
                ".widget-output .js-plotly-plot .main-svg", timeout=30_000
            )
        # Markdown tables: a `|` left unescaped inside a cell breaks a GFM table into a
        # paragraph of `| ... |` text, or shifts its cells; every table keeps all its rows
        raw = page.evaluate("""() => Array.from(document.querySelectorAll('main p'))
            .filter(p => !p.closest('table'))
            .map(p => p.textContent.trim()).filter(t => t.startsWith('|'))
            .map(t => t.slice(0, 80))""")
        assert not raw, f"{path}: Markdown tables rendered as text: {raw}"
        # cells counted with their colspan; the header is the last row of <thead>
        tables = page.evaluate("""() => {
            const width = r => r ? Array.from(r.cells).reduce((n, c) => n + c.colSpan, 0) : 0;
            return Array.from(document.querySelectorAll('main table')).map(t => ({
                head: width(t.tHead && t.tHead.rows[t.tHead.rows.length - 1]),
                rows: Array.from(t.tBodies).flatMap(b => Array.from(b.rows)).map(width),
                text: t.textContent.trim().slice(0, 60)}));
        }""")
        for t in tables:
            assert t["rows"], f"{path}: table without rows: {t['text']!r}"
            if t["head"]:
                assert set(t["rows"]) == {t["head"]}, (
                    f"{path}: table rows with {sorted(set(t['rows']))} cells under "
                    f"{t['head']} headers: {t['text']!r}"
                )
        # code is formatted at 88 columns and sized to fit the 1280 px text column
        # (book/_ext/static/book.css); folded code (solutions) is not measured
        wide = page.evaluate("""() => Array.from(document.querySelectorAll('div.cell_input pre'))
            .filter(e => e.innerText.trim() && e.scrollWidth > e.clientWidth + 1)
            .map(e => e.innerText.trim().split('\\n')[0].slice(0, 60))""")
        assert not wide, f"{path}: code cells scroll sideways at 1280 px: {wide}"
        page.wait_for_timeout(500)  # let late errors surface
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(
            path=str(ARTIFACTS / (path.replace("/", "_") + ".png")), full_page=True
        )
        bad = [p for p in problems if not _allowed(p)]
        assert not bad, "\n".join(bad)
    finally:
        page.close()


_HREF = re.compile(r'<a [^>]*href="([^"]+)"')
_ID = re.compile(r'id="([^"]+)"')


@pytest.mark.parametrize("path", [p for p, _ in PAGES])
def test_internal_links_resolve(path):
    """Every relative link of the page names a built file, and its anchor exists there."""
    base = f"http://book/{path}"
    broken = []
    for href in set(_HREF.findall((HTML / path).read_text(errors="ignore"))):
        if urlparse(href).scheme in ("http", "https", "mailto", "javascript"):
            continue
        url = urlparse(urljoin(base, href))
        target = HTML / url.path.lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(href)
        elif url.fragment and target.suffix == ".html":
            if url.fragment not in _ID.findall(target.read_text(errors="ignore")):
                broken.append(href)
    assert not broken, f"{path}: broken internal links {sorted(broken)}"


@pytest.mark.parametrize("path", [p for p, _ in PAGES])
def test_page_size(path):
    """Chapters must stay small: plotly.js is served once from _static, never inlined."""
    html = (HTML / path).read_text(errors="ignore")
    size = len(html.encode())
    assert size < 3_000_000, f"{path} is {size / 1e6:.2f} MB (limit 3 MB)"
    assert "window.PlotlyConfig" not in html, "plotly.js is inlined in the page"
