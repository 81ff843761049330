"""Worker liveness in the job store, for ``/readyz``.

A solo-pool worker that runs a stage cannot answer a broker ``inspect`` ping, so readiness asked that
way said 503 whenever a queue's only worker was busy. Instead a thread of the worker process writes a
beat per consumed queue (``JobStore.worker_beat``, expiring after ``liveness_ttl_s``) every
``liveness_s`` seconds, busy or not; the gateway counts unexpired beats. A worker that stops cleanly
removes its beats; one that dies stops beating and drops out after ``liveness_ttl_s``.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from celery import signals

from cardiosynth.workers import runtime

log = logging.getLogger(__name__)


class LivenessBeat:
    """Beats ``queues`` for worker ``name`` from a daemon thread until :meth:`stop`."""

    def __init__(self, name: str, queues: list[str], every_s: float, ttl_s: float) -> None:
        if ttl_s <= every_s:
            raise ValueError(f"liveness ttl {ttl_s} s must exceed the beat interval {every_s} s")
        self.name, self.queues, self.every_s, self.ttl_s = name, queues, every_s, ttl_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)

    def beat(self) -> None:
        for queue in self.queues:
            runtime.jobs().worker_beat(queue, self.name, self.ttl_s)

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # the store is down: readiness says so by itself
                log.warning("liveness beat failed: %s", exc)
            if self._stop.wait(self.every_s):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every_s + 1)
        for queue in self.queues:
            try:
                runtime.jobs().worker_gone(queue, self.name)
            except Exception as exc:
                log.warning("could not remove the liveness of %s: %s", self.name, exc)


_current: dict[str, LivenessBeat] = {}


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _start(sender: Any, **_: Any) -> None:
    """Once the consumer is ready: beat every queue this worker consumes (``-Q``)."""
    queues = sorted(sender.app.amqp.queues.consume_from)
    settings = runtime.settings()
    beat = LivenessBeat(sender.hostname, queues, settings.liveness_s, settings.liveness_ttl_s)
    beat.start()
    _current["beat"] = beat
    log.info("liveness: %s beats %s every %.0f s", sender.hostname, queues, settings.liveness_s)


@signals.worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop(**_: Any) -> None:
    beat = _current.pop("beat", None)
    if beat is not None:
        beat.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m cardiosynth.workers.liveness QUEUE WORKER``: exit 0 when that worker's beat is
    current (the container health check; a busy solo-pool worker cannot answer ``inspect ping``)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m cardiosynth.workers.liveness QUEUE WORKER (e.g. vae vae@host)\n")
        return 2
    queue, worker = args
    live = runtime.jobs().worker_live(queue, worker)
    sys.stdout.write(f"{worker} ({queue}): {'live' if live else 'not live'}\n")
    return 0 if live else 1


if __name__ == "__main__":
    sys.exit(main())
