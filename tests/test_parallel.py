"""Per-image work on threads: results in input order, and reused read buffers never overwritten while in use."""

import random
import sys
import time

import numpy as np
import pytest

from adaspx.parallel import SWITCH_INTERVAL, BufferRing, ordered_map


def test_ring_arrays_are_not_reused_while_a_worker_or_the_caller_holds_them():
    workers = 3
    ring = BufferRing(workers)
    rng = random.Random(0)
    delays = [rng.random() * 0.004 for _ in range(60)]

    def items():
        for k in range(60):
            a = ring.array((64, 64), np.int32)
            a.fill(k)  # as a reader fills it
            yield k, a

    def work(k, a):
        time.sleep(delays[k])  # workers finish out of order
        return k, a, bool((a == k).all())

    seen = []
    for k, a, intact_in_worker in ordered_map(work, items(), workers):
        time.sleep(0.001)  # the caller still uses the result (writes it) before asking for the next
        assert intact_in_worker and (a == k).all()
        seen.append(k)
    assert seen == list(range(60))


def test_ring_reuses_its_arrays_and_reallocates_on_a_new_shape():
    ring = BufferRing(1)  # lookahead 2: three slots
    first = [ring.array((4, 4), np.uint16) for _ in range(3)]
    assert ring.array((4, 4), np.uint16) is first[0]
    other = ring.array((2, 4), np.uint16)
    assert other.shape == (2, 4) and other is not first[1]


def test_switch_interval_is_short_while_mapping_and_restored_after():
    """ordered_map shortens the interpreter's switch interval for its readers and writers, and gives the caller's
    own setting back when it ends, also when a worker fails."""
    before = sys.getswitchinterval()
    seen = [sys.getswitchinterval() for _ in ordered_map(lambda k: k, ((k,) for k in range(5)), 2)]
    assert seen == [pytest.approx(SWITCH_INTERVAL)] * 5
    assert sys.getswitchinterval() == before

    def fail(k):
        raise ValueError(f"image {k}")

    with pytest.raises(ValueError, match="image 0"):
        list(ordered_map(fail, ((k,) for k in range(3)), 2))
    assert sys.getswitchinterval() == before
