"""The models a request may name: the ones the workers can load.

Workers load a model from the local registry, else from the object store where ``cardiosynth models
push`` put it (``registry.load_model_anywhere``). The gateway accepts the same set: the local registry
plus the store's ``models/`` listing, cached for ``ttl_s`` so that requests do not list the store
each time. A name the cache does not know is looked up again at once (at most every
``miss_refresh_s``), so a model pushed a moment ago is accepted without waiting for the cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cardiosynth.models.catalog import STORE_PREFIX, find_model, list_models, pushed_models
from cardiosynth.storage.base import ObjectStore


class ModelCatalog:
    def __init__(
        self,
        store: ObjectStore,
        *,
        ttl_s: float = 30.0,
        miss_refresh_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 0 or miss_refresh_s < 0:
            raise ValueError(f"ttl_s and miss_refresh_s must be >= 0, got {ttl_s} and {miss_refresh_s}")
        self.store, self.ttl_s, self.miss_refresh_s, self.clock = store, ttl_s, miss_refresh_s, clock
        self._pushed: set[tuple[str, str]] = set()
        self._listed_at: float | None = None
        self._lock = threading.Lock()

    def pushed(self, *, max_age_s: float | None = None) -> set[tuple[str, str]]:
        """``(kind, version)`` of the models in the object store, listed at most ``max_age_s`` ago
        (default ``ttl_s``). A store that cannot be listed raises (the API answers 503)."""
        max_age = self.ttl_s if max_age_s is None else max_age_s
        with self._lock:
            now = self.clock()
            if self._listed_at is None or now - self._listed_at > max_age:
                self._pushed = pushed_models(self.store.list_keys(STORE_PREFIX))
                self._listed_at = now
            return set(self._pushed)

    def check(self, kind: str, version: str) -> None:
        """Return when a worker can load model ``kind`` at ``version``; ``ValueError`` naming what
        exists otherwise."""
        try:
            find_model(kind, version)  # the local registry: no store call for the shipped models
            return
        except ValueError:
            pass
        if (kind, version) in self.pushed() or (kind, version) in self.pushed(max_age_s=self.miss_refresh_s):
            return
        local = {v for k, v, _ in list_models() if k == kind}
        stored = {v for k, v in self.pushed() if k == kind}
        available = sorted(local | stored)
        raise ValueError(f"no {kind} model {version!r}; available: {available or 'none'}")
