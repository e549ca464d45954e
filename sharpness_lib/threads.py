"""One place for the thread settings of every chapter kernel (the first hidden cell calls it).

The book's runs are small (width ~50, n ~ 20-500): a torch or BLAS thread pool spread over the
2 shared cores of the build machine costs more in synchronisation than it gains, and the
library's parallel helpers (``run_seeds``, sweeps) already run one training per core. Measured
(issue 11): the playground's default Run took 7.5 s with torch's 2 threads and 4.1 s with 1;
again on a busy 2-core machine, ``train`` of that preset: 5.8 s against 2.1 s.

:func:`configure_threads` sets, for this process and the worker processes it starts,

* torch's intra-op threads (``torch.set_num_threads``);
* the BLAS/OpenMP pools already loaded (numpy's OpenBLAS, torch's OpenMP) through
  ``threadpoolctl`` when it is installed, and the ``*_NUM_THREADS`` variables that pools loaded
  later (and child processes) read at start-up;
* numba's parallel threads (``numba.set_num_threads``), capped at numba's pool size.
"""

from __future__ import annotations

import os

__all__ = ["ENV_VARS", "configure_threads"]

# read once by each library when it loads (and inherited by worker processes)
ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

_limiter = (
    None  # the threadpoolctl limit kept alive (it is undone when garbage-collected)
)


def configure_threads(n: int = 1) -> int:
    """Use ``n`` threads for torch, BLAS/OpenMP and numba in this kernel; returns ``n``.

    Idempotent: calling it again with the same ``n`` changes nothing. Raises ``ValueError`` if
    ``n`` is not an integer >= 1.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(
            f"n = {n!r} is invalid: the thread count must be an integer >= 1."
        )
    for var in ENV_VARS:
        os.environ[var] = str(n)

    # numba first: starting its threading layer resets the OpenMP runtime it shares with
    # torch (libgomp) to numba's own thread count, undoing a torch setting made before it
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))

    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)

    global _limiter
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: then only pools loaded after this call are limited
        pass
    else:
        _limiter = threadpool_limits(limits=n)
    return n
