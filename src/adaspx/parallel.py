"""Per-image work on a few threads, results in input order.

The compiled kernels and NumPy's large-array loops release the GIL, so threads run them in parallel; HDF5 reads
and writes stay in the calling thread (h5py serialises them anyway). Each item is computed by one thread from its
own inputs only, so results do not depend on the number of threads.

While :func:`ordered_map` runs, the interpreter's switch interval is shortened (``SWITCH_INTERVAL``): the calling
thread gives up the GIL for every HDF5 read and write, and getting it back from a worker busy with NumPy's small
per-region steps otherwise waits up to Python's default 5 ms, once per read: about a fifth of ``merge_superpixels``'
time per 1024x2048 image on 2 cores (``benchmarks/README.md``, "Scale").
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

SWITCH_INTERVAL = 0.0005  # seconds; Python's default is 0.005


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def lookahead(workers: int) -> int:
    """Items :func:`ordered_map` holds besides the one being read: submitted, or yielded and not yet let go."""
    return 2 * max(1, workers)


def ordered_map(fn: Callable[..., Any], items: Iterable[tuple], workers: int) -> Iterator[Any]:
    """``fn(*item)`` for each item, computed on ``workers`` threads and yielded in input order.

    ``items`` is consumed lazily in the calling thread, at most ``lookahead(workers)`` items ahead of the result
    the caller last received (which it is done with when it asks for the next), so memory holds a bounded number
    of images whatever the length of ``items``.
    """
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, short_switch_interval():
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, *item))
            if len(pending) >= lookahead(workers):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@contextmanager
def short_switch_interval() -> Iterator[None]:
    """Run the block with the switch interval at most ``SWITCH_INTERVAL``; the previous value is restored after."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


class BufferRing:
    """Arrays handed out in turn to a reader that feeds :func:`ordered_map` with ``workers`` threads.

    While the reader reads item j, items up to j - 1 - lookahead(workers) are done with, so with lookahead + 1
    arrays none is reused while a worker or the caller still holds it. Reading into an array used before skips
    the page faults of a fresh one: about half the cost of reading a 1024x2048 map on the machines measured
    (``benchmarks/README.md``, "Scale").
    """

    def __init__(self, workers: int) -> None:
        self._slots: list[np.ndarray | None] = [None] * (lookahead(workers) + 1)
        self._next = 0

    def array(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array of this shape and dtype (the next slot's, reallocated if it does not fit)."""
        a = self._slots[self._next]
        if a is None or a.shape != tuple(shape) or a.dtype != np.dtype(dtype):
            a = np.empty(shape, dtype=dtype)
            self._slots[self._next] = a
        self._next = (self._next + 1) % len(self._slots)
        return a
