"""Threads for the CPU work around the networks: label cleaning, restoring stacks to the native grid,
compositing images, biomarkers.

On a GPU the networks take a fraction of a second for 100 subjects and this per-stack work, single
threaded, was 95 % of the pipeline (measured on an H200: decode 11.0 s of which the forward pass is
0.2 s, restore 9.1 s, for n = 100). Its heavy parts are SciPy ndimage and NumPy calls, which release
the GIL, so threads (not processes: a Celery prefork child may not start processes of its own) spread
it over the machine's cores. Results are returned in input order and every item is computed by a
pure function, so output does not depend on the number of threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

ENV = "CARDIOSYNTH_THREADS"
MAX_THREADS = 16  # beyond this the GIL-holding Python parts dominate


def thread_count(setting: int | None = None) -> int:
    """Threads for :func:`thread_map`: ``setting``, else ``CARDIOSYNTH_THREADS``, else the CPUs this
    process may run on (at most ``MAX_THREADS``)."""
    if setting is None:
        text = os.environ.get(ENV, "").strip()
        if text:
            try:
                setting = int(text)
            except ValueError:
                raise ValueError(f"{ENV} must be a positive integer, got {text!r}") from None
    if setting is not None:
        if setting < 1:
            raise ValueError(f"thread count must be >= 1, got {setting}")
        return setting
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cpus))


def thread_map(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, computed by up to :func:`thread_count` threads, in input order.

    One item or one thread runs inline (no pool, the exact old path). An exception in any item is
    raised here, as the loop would.
    """
    work = list(items)
    count = min(thread_count(threads), len(work))
    if count <= 1:
        return [fn(x) for x in work]
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="cardiosynth") as pool:
        return list(pool.map(fn, work))
