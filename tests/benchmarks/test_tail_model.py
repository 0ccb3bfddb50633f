"""``benchmarks/tail_model.py``: the dispatch model of the forward's last wave, on launches
small enough to follow by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchmarks import tail_model as T  # noqa: E402


def test_a_lone_block_runs_at_its_own_limit():
    t, active = T.simulate(np.array([9.0]), sms=1, slots=4, m=3, jitter=0.0)
    assert t == pytest.approx(30.0) and active == pytest.approx(1.0)


def test_full_multiprocessors_share_their_throughput():
    # 2 multiprocessors x 2 slots, 4 blocks of cost 10: each runs two at half speed.
    t, active = T.simulate(np.full(4, 9.0), sms=2, slots=2, m=1, jitter=0.0)
    assert t == pytest.approx(20.0) and active == pytest.approx(1.0)


def test_a_last_wave_leaves_a_multiprocessor_idle():
    # 3 blocks of cost 10 on 2 multiprocessors of one slot: the second idles half the time.
    t, active = T.simulate(np.full(3, 9.0), sms=2, slots=1, m=1, jitter=0.0)
    assert t == pytest.approx(20.0) and active == pytest.approx(0.75)


def test_longest_first_fills_the_tail():
    """Costs 2, 2, 2, 2, 8 on 2 multiprocessors of one slot: in this order the long block
    starts last and ends at 12; longest first it ends at 8, beside the four short ones."""
    work = np.array([1.0, 1.0, 1.0, 1.0, 7.0])
    grid, _ = T.simulate(work, sms=2, slots=1, m=1, jitter=0.0)
    lpt, active = T.simulate(work, sms=2, slots=1, m=1, jitter=0.0,
                             order=T.longest_first(work, len(work)))
    assert (grid, lpt, active) == (pytest.approx(12.0), pytest.approx(8.0), pytest.approx(1.0))


def test_longest_first_sorts_within_each_batch_block():
    steps = np.array([1, 3, 2, 1, 3, 2])
    assert T.longest_first(steps, 3).tolist() == [1, 2, 0, 4, 5, 3]
    assert T.longest_first(np.array([2, 5, 5, 1]), 4).tolist() == [1, 2, 0, 3]  # ties: grid
    many = np.tile([3, 1, 3, 2], 25)  # ties in grid order in a sort long enough to reorder them
    order = T.longest_first(many, len(many)).tolist()
    assert order == ([i for i in range(100) if many[i] == 3] + [i for i in range(100)
                     if many[i] == 2] + [i for i in range(100) if many[i] == 1])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="m, slots and sms"):
        T.simulate(np.ones(3), sms=2, slots=0, m=1)
    with pytest.raises(SystemExit) as info:
        T.main(["--cases", "P256,M512"])
    assert info.value.code == 2
