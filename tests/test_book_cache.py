"""The chapters run once in `make test`: under nbval, whose kernel messages the book-cache
plugin (book/_ext/nbval_book_cache.py) turns into the executed notebook the book renders.
The executed notebook must be what myst-nb's own execution (nbclient) gives."""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import nbformat.v4 as v4
import pytest
from jupyter_cache import get_cache
from nbclient import execute

from sharpness_lib.renderer import BUILD_ENV_VAR

ROOT = Path(__file__).resolve().parents[1]

# every kind of output the chapters produce, and the message types that rewrite outputs
CELLS = [
    "import sys\nprint('out 1', flush=True)\nprint('err', file=sys.stderr, flush=True)\n"
    "print('out 2', flush=True)",
    "",
    "from IPython.display import Markdown, clear_output, display\n"
    "display(Markdown('**before**'))\nclear_output(wait=True)\n"
    "display(Markdown('after clear'))\n1 + 1",
    "handle = display(Markdown('v1'), display_id=True)",
    "handle.update(Markdown('v2'))",
    "from myst_nb import glue\nglue('answer', 42.5)\nglue('hidden', 'x', display=False)",
    "import ipywidgets as W\nslider = W.IntSlider(value=3)\nout = W.Output()\n"
    "W.VBox([slider, out])",
    "slider.value = 7\nwith out:\n    print('captured')",
    "out.outputs = ({'output_type': 'stream', 'name': 'stdout', 'text': 'set'},)",
    "import os\nprint(os.environ.get('SHARPNESS_BOOK_BUILD'))",
    "display({'application/vnd.plotly.v1+json': {'data': [], 'layout': {}},\n"
    "         'text/plain': 'Figure'}, raw=True)",
]


def _notebook(cells):
    return v4.new_notebook(
        cells=[v4.new_markdown_cell("# A chapter")]
        + [v4.new_code_cell(c) for c in cells],
        metadata={
            "kernelspec": {
                "display_name": "Python 3",
                "language": "python",
                "name": "python3",
            }
        },
    )


def _nbval(path, cache=None):
    """nbval with the book-cache plugin over one notebook; ``--book-cache`` if ``cache``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "book" / "_ext")}
    option = [f"--book-cache={cache}"] if cache is not None else []
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "nbval_book_cache", "-p", "no:cacheprovider",
         "--nbval-lax", "--nbval-current-env", *option, "-q", str(path)],
        cwd=path.parent, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def _canonical(nb):
    """The notebook's outputs and widget state as JSON, with the random widget model ids
    renamed by where they sit (reached from the outputs, then through the references
    between models): the ids are the only thing two runs may differ in."""
    cells = [(c.execution_count, c.outputs) for c in nb.cells if c.cell_type == "code"]
    widgets = nb.metadata.get("widgets", {})
    state = widgets.get("application/vnd.jupyter.widget-state+json", {}).get(
        "state", {}
    )
    names = {}

    def visit(model_id):
        if model_id not in names:
            names[model_id] = f"model{len(names)}"
            for ref in re.findall(
                r"IPY_MODEL_(\w{32})", json.dumps(state.get(model_id), sort_keys=True)
            ):
                visit(ref)

    for model_id in re.findall(
        r'"model_id": "(\w{32})"', json.dumps(cells, sort_keys=True)
    ):
        visit(model_id)
    for model_id in sorted(state, key=lambda m: state[m]["model_name"]):
        visit(model_id)  # models no displayed widget refers to
    text = json.dumps([cells, widgets], sort_keys=True)
    renamed = re.sub(r"[0-9a-f]{32}", lambda m: names.get(m.group(), m.group()), text)
    return json.dumps(json.loads(renamed), sort_keys=True, indent=1)


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("book")
    path = tmp / "chapter.ipynb"
    nbformat.write(_notebook(CELLS), path)
    result = _nbval(path, tmp / "cache")
    assert result.returncode == 0, result.stdout + result.stderr
    return path, get_cache(str(tmp / "cache"))


def test_the_stored_chapter_is_what_nbclient_produces(chapter, monkeypatch):
    path, cache = chapter
    source = nbformat.read(path, as_version=4)
    _, replayed = cache.merge_match_into_notebook(copy.deepcopy(source))
    # what jupyter-book's process tells the kernels it starts (figures for static pages)
    monkeypatch.setenv(BUILD_ENV_VAR, "1")
    direct = execute(copy.deepcopy(source), cwd=str(path.parent), kernel_name="python3")
    assert _canonical(replayed) == _canonical(direct)
    # the comparison has teeth: the replay kept what the message types changed
    outputs = [c.outputs for c in replayed.cells if c.cell_type == "code"]
    markdown = [o.data.get("text/markdown") for o in outputs[2] if "data" in o]
    assert markdown == ["after clear", None]  # the cleared display is gone; then 1 + 1
    assert outputs[3][0].data["text/markdown"] == "v2"
    assert outputs[-2][0].text == "1\n"  # the kernel ran as under jupyter-book build
    # streams stay as sent (myst-nb's nb_merge_streams is off, and nbclient does not merge)
    assert [o.name for o in outputs[0]].count("stdout") == 2
    state = replayed.metadata.widgets["application/vnd.jupyter.widget-state+json"][
        "state"
    ]
    assert {"value": 7} in [{"value": s["state"].get("value")} for s in state.values()]


def test_the_book_build_finds_the_stored_chapter(chapter):
    path, cache = chapter
    record = cache.match_cache_notebook(nbformat.read(path, as_version=4))
    assert record.uri == str(path.resolve())


def test_a_failing_chapter_fails_and_is_not_stored(tmp_path):
    path = tmp_path / "broken.ipynb"
    nbformat.write(
        _notebook(["x = 1", "assert x == 2, 'the hidden check failed'"]), path
    )
    result = _nbval(path, tmp_path / "cache")
    assert result.returncode == 1 and "the hidden check failed" in result.stdout
    with pytest.raises(KeyError):
        get_cache(str(tmp_path / "cache")).match_cache_notebook(
            nbformat.read(path, as_version=4)
        )


def test_without_the_option_nothing_is_stored(tmp_path):
    path = tmp_path / "plain.ipynb"
    nbformat.write(_notebook(["print('hello')"]), path)
    result = _nbval(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.ipynb"]
