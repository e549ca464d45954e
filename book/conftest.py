"""pytest configuration for the chapters: ``pytest --nbval-lax book/*.ipynb [--book-cache DIR]``.

The plugin lives with the book's other build tooling in ``book/_ext/nbval_book_cache.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

from nbval_book_cache import *  # noqa: E402, F403  (pytest collects the hooks by name)
