"""Worker liveness in the job store, for ``/readyz``.

A solo-pool worker that runs a stage cannot answer a broker ``inspect`` ping, so readiness asked that
way said 503 whenever a queue's only worker was busy. Instead a thread of the worker process writes a
beat per consumed queue (``JobStore.worker_beat``, expiring after ``liveness_ttl_s``) every
``liveness_s`` seconds, busy or not; the gateway counts unexpired beats. A worker that stops cleanly
removes its beats; one that dies stops beating and drops out after ``liveness_ttl_s``.

With its beat a worker also says where it computes: a record ``workers/<queue>/<name>.json`` in the
object store (device, GPU name and memory, precision; refreshed every ``INFO_EVERY`` beats, removed
on a clean stop) that ``GET /models`` lists for the workers whose beat is current.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from typing import Any

from celery import signals

from cardiosynth.workers import runtime

log = logging.getLogger(__name__)


INFO_EVERY = 12  # beats between two writes of the device record (free memory changes, the rest not)


def info_key(queue: str, name: str) -> str:
    """Object key of worker ``name``'s device record (a worker name such as ``vae@host`` holds
    characters an object key may not)."""
    return f"workers/{queue}/{re.sub(r'[^A-Za-z0-9._=-]', '-', name)}.json"


def device_info(device: str, precision: str, *, query_gpu: bool = True) -> dict[str, Any]:
    """Where this worker computes: :func:`cardiosynth.device.describe` of its configured device.

    ``query_gpu=False`` (a prefork pool's parent, which must not initialise CUDA before forking)
    reports the configured spec only. A device that cannot be had (``cuda`` on a machine without
    CUDA) is reported with its error: the models will fail to load with the same message.
    """
    info: dict[str, Any] = {"configured": device, "precision": precision}
    if not query_gpu:
        return {**info, "device": device, "name": "(described by the pool's processes)"}
    from cardiosynth.device import describe, resolve_device, resolve_precision

    try:
        resolved = resolve_device(device)
        info.update(describe(resolved))
        info["precision"] = resolve_precision(None if precision == "auto" else precision, resolved)
    except ValueError as exc:
        info.update(device=device, error=str(exc))
    return info


class LivenessBeat:
    """Beats ``queues`` for worker ``name`` from a daemon thread until :meth:`stop`; with ``info``
    (from :func:`device_info`), also keeps the worker's device record in the object store."""

    def __init__(
        self, name: str, queues: list[str], every_s: float, ttl_s: float, info: dict[str, Any] | None = None
    ) -> None:
        if ttl_s <= every_s:
            raise ValueError(f"liveness ttl {ttl_s} s must exceed the beat interval {every_s} s")
        self.name, self.queues, self.every_s, self.ttl_s = name, queues, every_s, ttl_s
        self.info = info
        self._beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)

    def beat(self) -> None:
        for queue in self.queues:
            runtime.jobs().worker_beat(queue, self.name, self.ttl_s)
        if self.info is not None and self._beats % INFO_EVERY == 0:
            self.write_info()
        self._beats += 1

    def write_info(self) -> None:
        """The device record of every queue this worker consumes (free memory as of now)."""
        if self.info is None:
            return
        info = dict(self.info)
        if str(info.get("device", "")).startswith("cuda") and "error" not in info:
            from cardiosynth.device import describe

            info.update(describe(str(info["device"])))
        info["device_name"] = info.pop("name", None)  # "name" is the worker's in the record
        for queue in self.queues:
            record = {**info, "name": self.name, "queue": queue, "written_at": time.time()}
            runtime.storage().put_bytes(info_key(queue, self.name), json.dumps(record).encode())

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
                if self.info is not None:
                    runtime.storage().delete(info_key(queue, self.name))
            except Exception as exc:
                log.warning("could not remove the liveness of %s: %s", self.name, exc)


_current: dict[str, LivenessBeat] = {}


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _start(sender: Any, **_: Any) -> None:
    """Once the consumer is ready: beat every queue this worker consumes (``-Q``)."""
    queues = sorted(sender.app.amqp.queues.consume_from)
    settings = runtime.settings()
    # Only a solo pool computes in this process; a prefork parent must not touch CUDA before forking.
    solo = "solo" in str(getattr(sender, "pool_cls", "solo")).lower()
    info = device_info(settings.device, settings.precision, query_gpu=solo)
    beat = LivenessBeat(sender.hostname, queues, settings.liveness_s, settings.liveness_ttl_s, info)
    beat.start()
    _current["beat"] = beat
    where = f"{info.get('device')} ({info.get('name')}, {info.get('memory_total_mib')} MiB)"
    log.info("liveness: %s beats %s every %.0f s; device %s", sender.hostname, queues, settings.liveness_s,
             where)  # fmt: skip


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
