"""Freed heap goes back to the system after every Celery task a worker runs."""

from __future__ import annotations

from typing import Any

import pytest
from celery import signals

from cardiosynth.workers import heap


def test_every_task_end_trims_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    import cardiosynth.workers.tasks  # noqa: F401  (the worker imports its handlers with its tasks)

    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    monkeypatch.setattr(heap, "_malloc_trim", lambda: trim)
    signals.task_postrun.send(sender=None, task_id="t", task=None)
    assert calls == [0]


def test_without_malloc_trim_nothing_is_released(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)
    assert heap.release_freed_memory() is False


def test_on_glibc_the_real_trim_runs() -> None:
    trim: Any = heap._malloc_trim()
    if trim is None:
        pytest.skip("this C library has no malloc_trim")
    _ = bytearray(64 * 2**20)  # something to free
    del _
    assert isinstance(heap.release_freed_memory(), bool)
