"""Per-image work on a few threads, results in input order.

The compiled kernels and NumPy's large-array loops release the GIL, so threads run them in parallel; HDF5 reads
and writes stay in the calling thread (h5py serialises them anyway). Each item is computed by one thread from its
own inputs only, so results do not depend on the number of threads.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ordered_map(fn: Callable[..., Any], items: Iterable[tuple], workers: int) -> Iterator[Any]:
    """``fn(*item)`` for each item, computed on ``workers`` threads and yielded in input order.

    ``items`` is consumed lazily in the calling thread, at most ``2 * workers`` items ahead of the results, so
    memory holds a bounded number of images whatever the length of ``items``.
    """
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, *item))
            if len(pending) >= 2 * max(1, workers):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
