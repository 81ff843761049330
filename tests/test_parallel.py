"""cardiosynth.parallel: threads for the per-stack CPU work, results in order and unchanged."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cardiosynth.parallel import ENV, thread_count, thread_map


def test_results_in_input_order_whatever_the_thread_count() -> None:
    items = list(range(50))
    expected = [x * x for x in items]
    for threads in (1, 2, 7, 64):
        assert thread_map(lambda x: x * x, items, threads) == expected


def test_work_is_spread_over_threads_and_one_thread_runs_inline() -> None:
    seen: set[int] = set()
    barrier = threading.Barrier(3, timeout=10)

    def work(_: int) -> None:
        seen.add(threading.get_ident())
        barrier.wait()  # only passes if three items run at once

    thread_map(work, range(3), 3)
    assert len(seen) == 3
    idents = thread_map(lambda _: threading.get_ident(), range(4), 1)
    assert set(idents) == {threading.get_ident()}


def test_an_error_in_one_item_is_raised() -> None:
    def work(x: int) -> int:
        if x == 5:
            raise ValueError("item 5")
        return x

    with pytest.raises(ValueError, match="item 5"):
        thread_map(work, range(10), 4)


def test_thread_count_from_setting_environment_and_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert 1 <= thread_count() <= 16
    monkeypatch.setenv(ENV, "3")
    assert thread_count() == 3
    assert thread_count(5) == 5
    monkeypatch.setenv(ENV, "many")
    with pytest.raises(ValueError, match="'many'"):
        thread_count()
    with pytest.raises(ValueError, match="0"):
        thread_count(0)


def test_cleaning_stacks_by_threads_equals_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from cardiosynth.synthesis.engine import clean_stacks

    rng = np.random.default_rng(0)
    labels = np.zeros((30, 48, 48), np.uint8)
    yy, xx = np.mgrid[:48, :48]
    for k in range(30):
        r = 6 + k % 5
        ring = (yy - 24) ** 2 + (xx - 24) ** 2
        labels[k][ring < (r + 4) ** 2] = 2
        labels[k][ring < r**2] = 3
        labels[k][(yy - 24) ** 2 + (xx - 8) ** 2 < 16] = 1
    labels[rng.random(labels.shape) < 0.02] = 2  # specks for the cleaning to remove
    plan = [(i, 1.0, "ED", 10) for i in range(3)]
    monkeypatch.setenv(ENV, "1")
    one = clean_stacks(labels, plan)
    monkeypatch.setenv(ENV, "3")
    three = clean_stacks(labels, plan)
    assert np.array_equal(one, three)
    assert not np.array_equal(one, labels)  # the cleaning did something
