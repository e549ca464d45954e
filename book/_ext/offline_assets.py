"""Offline JavaScript assets for the book: fetch them (CLI) and wire them into Sphinx (extension).

The built book must render with no network at all, so every script a page needs is served
from the book itself:

* MathJax 3 (Sphinx math),
* require.js + ``@jupyter-widgets/html-manager`` (static ipywidgets views, via myst-nb's
  ``nb_ipywidgets_js``),
* plotly.js, copied from the *installed* plotly Python package so that the JS version always
  matches the Python version that wrote the figure JSON.

The npm packages are fetched at build time with ``npm pack`` (pinned versions below; the repo
stays small). This file is the single source of truth for those pins:

    python book/_ext/offline_assets.py          # fetch into book/_vendor/ (idempotent)
    python book/_ext/offline_assets.py --check  # exit 1 if something is missing

As a Sphinx extension (``sphinx.local_extensions`` in ``_config.yml``) it

* adds ``book/_vendor`` to ``html_static_path`` *at config-inited time*. Jupyter Book scans every
  ``html_static_path`` entry it knows about for ``*.js`` and adds each file to every page (as soon
  as a root ``_static/`` folder exists); MathJax alone ships ~100 JS files, so the vendor folder
  must not be visible to that scan;
* fails the build early with a clear message when ``make vendor`` has not run;
* adds ``plotly.min.js`` only to pages that actually contain a plotly figure;
* sets ``SHARPNESS_BOOK_BUILD=1`` for the chapter kernels (see ``sharpness_lib.plotting``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR_DIR = HERE.parent / "_vendor"  # book/_vendor -> copied into _build/html/_static/

# name in _static/  ->  (npm spec, {path inside the npm tarball: path under VENDOR_DIR/name})
NPM_ASSETS: dict[str, tuple[str, dict[str, str]]] = {
    "mathjax": ("mathjax@3.2.2", {"package/es5": "."}),
    "requirejs": ("requirejs@2.3.8", {"package/require.js": "require.js"}),
    "jupyter-widgets": (
        "@jupyter-widgets/html-manager@1.0.15",
        # embed-amd.js locates its font files relative to its own URL: keep dist/ together
        # (minus the 6 MB source map and the non-AMD bundles we do not load).
        {"package/dist": "."},
    ),
}
_SKIP_SUFFIXES = (".map", "embed.js", "libembed-amd.js", "LICENSE.txt")

# Paths (relative to _static/) that _config.yml points at; checked before a build.
MATHJAX_JS = "mathjax/tex-mml-chtml.js"
REQUIRE_JS = "requirejs/require.js"
WIDGETS_JS = "jupyter-widgets/embed-amd.js"
PLOTLY_JS = "plotly/plotly.min.js"
REQUIRED = (MATHJAX_JS, REQUIRE_JS, WIDGETS_JS, PLOTLY_JS)

# Marker the plotly HTML renderer (sharpness_lib.plotting) writes into each figure.
PLOTLY_MARKER = "Plotly.newPlot("


# ----------------------------------------------------------------------------- fetching
def _stamp(name: str) -> Path:
    return VENDOR_DIR / name / ".vendored.json"


def _is_current(name: str, spec: str) -> bool:
    stamp = _stamp(name)
    return stamp.is_file() and json.loads(stamp.read_text()).get("spec") == spec


def _fetch_npm(name: str, spec: str, members: dict[str, str]) -> None:
    """``npm pack`` one pinned package and copy the wanted members to VENDOR_DIR/name."""
    dest = VENDOR_DIR / name
    if shutil.which("npm") is None:
        raise SystemExit(
            "vendor: npm not found; install Node.js/npm (e.g. apt-get install -y npm)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["npm", "pack", spec, "--silent", "--pack-destination", tmp],
            capture_output=True,
            text=True,
            check=False,  # error reported below
        )
        if out.returncode != 0:
            raise SystemExit(f"vendor: `npm pack {spec}` failed:\n{out.stderr.strip()}")
        tgz = Path(tmp) / out.stdout.strip().splitlines()[-1]
        digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp, filter="data")
        staging = Path(tmp) / "staging"
        for src_rel, dst_rel in members.items():
            src = Path(tmp) / src_rel
            dst = staging / dst_rel
            if src.is_dir():
                shutil.copytree(
                    src,
                    dst,
                    dirs_exist_ok=True,
                    ignore=lambda _d, names: [
                        n for n in names if n.endswith(_SKIP_SUFFIXES)
                    ],
                )
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        (staging / ".vendored.json").write_text(
            json.dumps({"spec": spec, "sha256": digest})
        )
        # Swap in atomically-ish so an interrupted fetch never leaves a half folder "current".
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), dest)


def _copy_plotly() -> bool:
    """Copy plotly.min.js from the installed plotly package (keeps JS == Python version)."""
    import plotly  # local import: the Sphinx extension side never needs it

    src = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    dst = VENDOR_DIR / PLOTLY_JS
    if dst.is_file() and dst.read_bytes() == src.read_bytes():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    _stamp("plotly").write_text(
        json.dumps({"spec": f"plotly-python=={plotly.__version__}"})
    )
    return True


def missing() -> list[str]:
    """Required asset paths (relative to _static/) that are not present yet."""
    return [p for p in REQUIRED if not (VENDOR_DIR / p).is_file()]


def fetch() -> None:
    """Fetch whatever is missing or stale; a no-op (no network) when all is current."""
    VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    # Fetched, not committed: keep the ~35 MB out of git without touching the repo .gitignore.
    (VENDOR_DIR / ".gitignore").write_text("# fetched by `make vendor`\n*\n")
    for name, (spec, members) in NPM_ASSETS.items():
        if _is_current(name, spec):
            print(f"vendor: {spec} present")
            continue
        print(f"vendor: fetching {spec} (npm pack)")
        _fetch_npm(name, spec, members)
    print("vendor: plotly.min.js " + ("copied" if _copy_plotly() else "present"))
    if missing():
        raise SystemExit(f"vendor: still missing {missing()}")


# ----------------------------------------------------------------------------- Sphinx
def _on_config_inited(app, config) -> None:
    from sphinx.errors import ConfigError

    if missing():
        raise ConfigError(
            f"offline assets missing under {VENDOR_DIR}: {missing()}. Run `make vendor` "
            "(or `python book/_ext/offline_assets.py`)."
        )
    config.html_static_path = [*config.html_static_path, str(VENDOR_DIR)]


def _dedupe_inline_scripts(context) -> None:
    """Drop duplicated inline ``<script>`` bodies from the page's script list.

    Sphinx 7.4 registers a body-only script added after builder init twice: once as
    ``_JavaScript(None, body=...)`` (app.add_js_file -> builder) and once as
    ``_JavaScript('', body=...)`` (re-read from the registry in prepare_writing); None != ''
    so its own de-duplication misses it. sphinx-thebe adds ``const THEBE_JS_URL = ...`` that
    way, and the second copy throws "Identifier 'THEBE_JS_URL' has already been declared" on
    every page. Not our content, but it is a console error a reader sees.
    """
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, keep = set(), []
    for js in scripts:
        filename = getattr(js, "filename", js) or ""
        key = (filename, tuple(sorted(getattr(js, "attributes", {}).items())))
        if not filename and key in seen:
            continue
        seen.add(key)
        keep.append(js)
    scripts[:] = keep


# ipywidgets' controls typeset labels with the MathJax *2* API (MathJax.Hub.Queue); with MathJax 3
# on the page that throws "Cannot read properties of undefined (reading 'Queue')" per label.
# MathJax 3 replaces window.MathJax (our object becomes its config) when it loads, and widgets
# may render before or after that, so a setter re-attaches a small Hub to whatever object
# window.MathJax is; Hub.Queue forwards "Typeset" jobs to MathJax 3 once it is ready.
MATHJAX_WIDGETS_SHIM = """(function () {
  var hub = {Queue: function () {
    var jobs = Array.prototype.slice.call(arguments);
    var mj = window.MathJax;
    if (!mj || !mj.startup || !mj.startup.promise || !mj.typesetPromise) return;
    mj.startup.promise = mj.startup.promise.then(function () {
      var els = jobs.filter(function (j) { return Array.isArray(j) && j[0] === "Typeset"; })
                    .map(function (j) { return j[2]; }).filter(Boolean);
      return els.length ? mj.typesetPromise(els) : null;
    }).catch(function () {});
  }};
  var current = window.MathJax || {};
  current.Hub = current.Hub || hub;
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (v) { current = v; if (v && typeof v === "object" && !v.Hub) v.Hub = hub; }
  });
})();"""

# The widget bundles locate their font files from webpack's public path: the html-manager part
# reads window.__jupyter_widgets_assets_path__, the base/controls parts derive it from their
# require.js module URL (by default "<page dir>/@jupyter-widgets/..."). Point both at the
# vendored folder; `var require = {...}` before require.js loads is require.js's config.
WIDGETS_PATHS_JS = """(function () {
  var base = new URL("%s", document.baseURI).href.replace(/\\/$/, "");
  window.__jupyter_widgets_assets_path__ = base + "/";
  window.require = {paths: {"@jupyter-widgets/html-manager/dist": base, "@jupyter-widgets": base}};
})();"""


def _page_loads_mathjax(app, pagename) -> bool:
    """Same test as sphinx.ext.mathjax.install_mathjax uses to add MathJax to a page."""
    if (
        app.builder.format != "html"
        or getattr(app.builder, "math_renderer_name", None) != "mathjax"
    ):
        return False
    domain = app.env.get_domain("math")
    return app.registry.html_assets_policy == "always" or domain.has_equations(pagename)


def _on_html_page_context(app, pagename, templatename, context, doctree) -> None:
    _dedupe_inline_scripts(context)
    scripts = [
        str(getattr(js, "filename", js) or "") for js in context.get("script_files", [])
    ]
    # plotly.js is 4.8 MB: load it only where a figure is (it is cached across pages anyway).
    # Added as a classic (blocking) <head> script so `Plotly` exists before the inline
    # Plotly.newPlot calls in the body run.
    has_widgets = any(s.endswith(WIDGETS_JS) for s in scripts)
    # widget state can hold figures too (the control panel draws into an Output widget),
    # escaped inside JSON where the marker does not appear literally
    if has_widgets or PLOTLY_MARKER in (context.get("body") or ""):
        app.add_js_file(PLOTLY_JS, priority=300)
    if has_widgets:
        rel = context["pathto"]("_static/jupyter-widgets/", 1)
        app.add_js_file(None, body=WIDGETS_PATHS_JS % rel, priority=310)
        if _page_loads_mathjax(app, pagename):
            app.add_js_file(None, body=MATHJAX_WIDGETS_SHIM, priority=320)


def setup(app):
    # Tell chapter kernels (they inherit this process's environment) that they run inside the
    # book build, so sharpness_lib.renderer emits offline HTML instead of plotly's JSON MIME type.
    from sharpness_lib.renderer import BUILD_ENV_VAR

    os.environ[BUILD_ENV_VAR] = "1"
    app.connect("config-inited", _on_config_inited)
    # priority > 500: run after myst-nb has added the per-page widget scripts
    app.connect("html-page-context", _on_html_page_context, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only check, exit 1 if missing"
    )
    args = parser.parse_args()
    if args.check:
        sys.exit(1 if missing() else 0)
    fetch()
