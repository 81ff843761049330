"""Celery worker processes for the tests that run the real pipeline: started with the flags a test
needs, stopped together."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


def start_worker(env: dict[str, str], queue: str, log: Path) -> subprocess.Popen[bytes]:
    """A solo-pool worker of ``queue`` with its output appended to ``log``. Mingle and gossip are off:
    they only sync state between workers at start (a second of "searching for neighbors" per worker)
    and nothing in the tests, or the service, reads them."""
    name = f"{queue}-{time.monotonic_ns()}@%h"
    cmd = [sys.executable, "-m", "celery", "-A", "cardiosynth.workers.tasks", "worker", "-Q", queue,
           "--pool", "solo", "--concurrency", "1", "-n", name, "--loglevel", "INFO",
           "--without-mingle", "--without-gossip"]  # fmt: skip
    with log.open("ab") as out:  # the child holds its own descriptor; this one is closed
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout_s: float = 20) -> None:
    """Warm shutdown of every worker still running, signalled at once (each takes about 2 s), then
    waited for; one that outlives ``timeout_s`` is killed."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
