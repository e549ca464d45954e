"""The book's plotly renderer: how a figure reaches a page or a live notebook.

Static book pages must stay small and work offline: during ``jupyter-book build`` figures are
emitted as HTML *without* plotly.js (the book serves one copy, see
``book/_ext/offline_assets.py``); in a live kernel they use plotly's own MIME type. Chapters
call :func:`use_book_renderer` in their hidden first cell.
"""

from __future__ import annotations

__all__ = [
    "BUILD_ENV_VAR",
    "RENDERER_NAME",
    "figure_mimebundle",
    "in_book_build",
    "use_book_renderer",
]

RENDERER_NAME = "sharpness_book"
# Set (to "1") in the processes that execute chapters for the book -- jupyter-book
# (book/_ext/offline_assets.py) and nbval under `make test` (book/_ext/nbval_book_cache.py);
# the kernels they start inherit it.
BUILD_ENV_VAR = "SHARPNESS_BOOK_BUILD"
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def in_book_build() -> bool:
    """True while a chapter is being executed by ``jupyter-book build``."""
    import os

    return os.environ.get(BUILD_ENV_VAR) == "1"


def figure_mimebundle(fig) -> dict:
    """The MIME bundle the book shows for ``fig`` (used by the renderer and the UI panel).

    * During the book build: ``text/html`` without plotly.js and without a MathJax CDN tag; the
      book loads one local ``plotly.min.js`` on pages that have a figure. (myst-nb cannot render
      plotly's own MIME type, and the stock HTML renderers either inline 4.8 MB of plotly.js per
      figure page or load it from a CDN.)
    * In a live kernel (JupyterLab, Notebook 7, VS Code): plotly's JSON MIME type only, which
      those frontends render natively; HTML without plotly.js would be blank there. Sending
      both is not an option: myst-nb warns about the JSON type, which fails ``-W`` builds.
    """
    import json

    import plotly.io as pio

    fig_dict = fig if isinstance(fig, dict) else fig.to_dict()
    if in_book_build():
        layout = fig_dict.get("layout", {})
        html = pio.to_html(
            fig_dict,
            config=_PLOTLY_CONFIG,
            include_plotlyjs=False,
            include_mathjax=False,
            full_html=False,
            default_width="100%",
            default_height=layout.get("height") or 450,
            validate=False,
        )
        return {"text/html": html}
    fig_json = json.loads(pio.to_json(fig_dict, validate=False))
    fig_json["config"] = dict(_PLOTLY_CONFIG)
    return {"application/vnd.plotly.v1+json": fig_json}


def use_book_renderer() -> str:
    """Register the book's plotly renderer and make it the default inside IPython.

    Call it in the hidden first cell (tag ``remove-cell``) of every chapter. Figures then show
    as :func:`figure_mimebundle` describes: offline-ready HTML in the built book, plotly's native
    MIME type in a live session.

    Outside IPython (plain ``python``) the renderer is registered but the default is left
    alone, so ``fig.show()`` keeps working as before. Returns the active default renderer name.
    """
    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    class BookRenderer(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            return figure_mimebundle(fig_dict)

    pio.renderers[RENDERER_NAME] = BookRenderer()
    try:
        from IPython import get_ipython  # the only IPython import in this module
    except ImportError:  # pragma: no cover - IPython ships with the book's requirements
        return pio.renderers.default
    if get_ipython() is not None:
        pio.renderers.default = RENDERER_NAME
    return pio.renderers.default
