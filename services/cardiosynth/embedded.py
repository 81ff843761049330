"""The embedded mode: the whole stack on one machine with only Python.

The same gateway and the same two worker kinds as in compose, as separate processes, with Kombu's
filesystem transport as broker, a SQLite job store and a local storage folder, all under one state
folder. :func:`demo` is the README's main command: start, submit, poll, download, stop.

The stack keeps its identity across restarts: the API key and the signing key of download links live
in ``<state>/identity.json`` (mode 0600), made on the first start and reused after, so earlier jobs,
keys and links keep working. A process that dies is restarted by :class:`Supervisor` (with a backoff,
and a log line) instead of the whole stack stopping.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


IDENTITY_FILE = "identity.json"


@dataclass(frozen=True)
class Identity:
    """What must not change when the stack restarts on the same state folder."""

    api_key: str
    signing_key: str


def load_identity(state: Path, *, api_key: str | None = None) -> Identity:
    """The stack's identity from ``state/identity.json``, made (mode 0600) on first use.

    ``api_key`` (the command line, or ``CARDIOSYNTH_API_KEY``) replaces the stored key and is stored."""
    path = state / IDENTITY_FILE
    stored: dict[str, str] = {}
    if path.is_file():
        if path.stat().st_mode & 0o077:
            log.warning("%s was readable by others: made private (0600)", path)
            path.chmod(0o600)
        stored = json.loads(path.read_text(encoding="utf-8"))
    identity = Identity(
        api_key=api_key or stored.get("api_key") or secrets.token_urlsafe(24),
        signing_key=stored.get("signing_key") or secrets.token_hex(32),
    )
    if asdict(identity) != stored:
        state.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        # Created private (never world-readable, not even for an instant), then renamed into place.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(identity), handle)
        os.replace(tmp, path)
    return identity


class Supervisor:
    """Starts the stack's processes and restarts one that died, after a backoff that grows while it
    keeps dying (``backoff_s``; back to the first step once it has run ``healthy_after_s``)."""

    def __init__(
        self,
        commands: dict[str, list[str]],
        env: dict[str, str],
        logs: Path,
        *,
        backoff_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
        healthy_after_s: float = 120.0,
    ) -> None:
        if not backoff_s or min(backoff_s) < 0:
            raise ValueError(f"backoff_s must be non-negative delays, got {backoff_s}")
        self.commands, self.env, self.logs = commands, env, logs
        self.backoff_s, self.healthy_after_s = backoff_s, healthy_after_s
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = dict.fromkeys(commands, 0)
        self._started: dict[str, float] = {}
        self._due: dict[str, float] = {}

    def start(self, name: str) -> None:
        with (self.logs / f"{name}.log").open("ab") as handle:
            self.processes[name] = subprocess.Popen(
                self.commands[name], env=self.env, stdout=handle, stderr=subprocess.STDOUT
            )
        self._started[name] = time.monotonic()

    def start_all(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for name in self.commands:
            self.start(name)

    def check(self) -> list[str]:
        """Schedule a restart of each process that died; start those whose backoff is over; return
        the names started now."""
        now, started = time.monotonic(), []
        for name, proc in list(self.processes.items()):
            if proc.poll() is None:
                continue
            if name not in self._due:
                if now - self._started[name] >= self.healthy_after_s:
                    self.restarts[name] = 0  # it had been running fine: a fresh failure
                delay = self.backoff_s[min(self.restarts[name], len(self.backoff_s) - 1)]
                self._due[name] = now + delay
                log.error(
                    "%s exited with %s; restarting it in %.0f s (see %s)",
                    name, proc.returncode, delay, self.logs / f"{name}.log",
                )  # fmt: skip
            if now >= self._due[name]:
                del self._due[name]
                self.restarts[name] += 1
                self.start(name)
                log.warning("%s restarted (restart %d)", name, self.restarts[name])
                started.append(name)
        return started

    def stop_all(self, timeout_s: float = 30.0) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class Stack:
    """A running embedded stack."""

    url: str
    api_key: str
    state: Path
    processes: dict[str, subprocess.Popen[bytes]]
    supervisor: Supervisor | None = field(default=None, repr=False)

    def supervise(self, stopped: Callable[[], bool], *, poll_s: float = 1.0) -> None:
        """Keep the stack running (restart what dies) until ``stopped()`` says so."""
        if self.supervisor is None:
            raise ValueError("this stack has no supervisor")
        while not stopped():
            self.supervisor.check()
            time.sleep(poll_s)

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """A JSON call to the gateway with the stack's API key."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("X-API-Key", self.api_key)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def stack_env(
    state: Path, port: int, api_key: str, *, data: Path | None = None, signing_key: str | None = None
) -> dict[str, str]:
    """Environment of every process of an embedded stack rooted at ``state``."""
    env = {
        **os.environ,
        "CARDIOSYNTH_BROKER_URL": "filesystem://",
        "CARDIOSYNTH_BROKER_FOLDER": str(state / "broker"),
        "CARDIOSYNTH_JOB_STORE_URL": f"sqlite:///{state / 'jobs.db'}",
        "CARDIOSYNTH_STORAGE": "local",
        "CARDIOSYNTH_STORAGE_DIR": str(state / "storage"),
        "CARDIOSYNTH_SIGNING_KEY": signing_key or secrets.token_hex(32),
        "CARDIOSYNTH_API_KEYS": api_key,
        "CARDIOSYNTH_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CARDIOSYNTH_HEARTBEAT_STALE_S": "300",
    }
    if data is not None:
        env["CARDIOSYNTH_DATA_DIR"] = str(data)
    return env


@contextmanager
def running_stack(
    state: Path,
    *,
    port: int | None = None,
    data: Path | None = None,
    ready_timeout_s: float = 180.0,
    api_key: str | None = None,
    wait_for_workers: bool = True,
) -> Iterator[Stack]:
    """Start gateway + VAE worker + SPADE worker; yield once ``/readyz`` answers 200; stop them all.

    ``wait_for_workers=False``: yield once the gateway answers (``/healthz``), the workers still
    starting (jobs wait in the queue meanwhile): callers with work for the gateway alone start sooner.

    The API key and signing key are the state folder's (:func:`load_identity`); ``api_key`` or
    ``CARDIOSYNTH_API_KEY`` sets the key."""
    state.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    identity = load_identity(state, api_key=api_key or os.environ.get("CARDIOSYNTH_API_KEY"))
    env = stack_env(state, port, identity.api_key, data=data, signing_key=identity.signing_key)
    logs = state / "logs"
    logs.mkdir(exist_ok=True)
    python = sys.executable
    commands = {
        "gateway": [python, "-m", "uvicorn", "cardiosynth.gateway.main:app", "--host", "127.0.0.1",
                    "--port", str(port), "--log-level", "warning"],
        "worker-vae": [python, "-m", "celery", "-A", "cardiosynth.workers.tasks", "worker", "-Q", "vae",
                       "--pool", "solo", "-n", "vae@%h", "--loglevel", "INFO"],
        "worker-spade": [python, "-m", "celery", "-A", "cardiosynth.workers.tasks", "worker", "-Q", "spade",
                         "--pool", "solo", "-n", "spade@%h", "--loglevel", "INFO"],
    }  # fmt: skip
    supervisor = Supervisor(commands, env, logs)
    processes = supervisor.processes
    try:
        supervisor.start_all()
        stack = Stack(f"http://127.0.0.1:{port}", identity.api_key, state, processes, supervisor)
        deadline = time.monotonic() + ready_timeout_s
        while True:
            for name, proc in processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {logs / (name + '.log')}")
            try:
                status, _ = stack.request("GET", "/readyz" if wait_for_workers else "/healthz")
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stack was not ready after {ready_timeout_s:.0f} s; logs in {logs}")
            time.sleep(0.5)
        yield stack
    finally:
        supervisor.stop_all()


def watch(stack: Stack, job_id: str, *, poll_s: float = 1.0) -> Iterator[dict[str, Any]]:
    """The job as it changes, until a terminal state: from ``GET /jobs/{id}/events`` (Server-Sent
    Events; a stream that ends early is resumed with ``Last-Event-ID``), or by polling every
    ``poll_s`` where the stream is not to be had."""
    from cardiosynth.gateway.events import TERMINAL_STATES, parse_events

    last_id: str | None = None
    while True:
        req = urllib.request.Request(f"{stack.url}/jobs/{job_id}/events")
        req.add_header("X-API-Key", stack.api_key)
        if last_id is not None:
            req.add_header("Last-Event-ID", last_id)
        try:
            # The server sends a comment at least every 15 s: a read that waits longer means it is gone.
            with urllib.request.urlopen(req, timeout=60) as response:
                if response.status == 200:
                    for event in parse_events(line.decode("utf-8") for line in response):
                        last_id = event.id
                        job: dict[str, Any] = json.loads(event.data)
                        yield job
                        if job["state"] in TERMINAL_STATES:
                            return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            log.info("event stream of job %s: %s; polling instead", job_id, exc)
            time.sleep(poll_s)
        # The stream ended (its longest time, a 204 or an error): where does the job stand now?
        status, job = stack.request("GET", f"/jobs/{job_id}")
        if status != 200:
            raise RuntimeError(f"GET /jobs/{job_id} answered {status}: {job.get('detail', job)}")
        yield job
        if job["state"] in TERMINAL_STATES:
            return


def run_job(
    stack: Stack, body: dict[str, Any], out: Path, *, echo: Callable[[str], None], poll_s: float = 1.0
) -> dict[str, Any]:
    """Submit ``body``, show progress while polling, download every file into ``out``; return the results."""
    status, job = stack.request("POST", "/synthesize", body)
    if status != 202:
        raise RuntimeError(f"POST /synthesize answered {status}: {job.get('detail', job)}")
    job_id = job["id"]
    echo(f"job {job_id} queued")
    last = ""
    for job in watch(stack, job_id, poll_s=poll_s):
        stages = ", ".join(f"{k} {v['done']}/{v['total']}" for k, v in job.get("progress", {}).items())
        line = f"  {job['state']}" + (f": {stages}" if stages else "")
        if line != last:
            echo(line)
            last = line
    if job["state"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['state']}: {(job.get('error') or {}).get('detail')}")
    status, results = stack.request("GET", f"/jobs/{job_id}/results")
    if status != 200:
        raise RuntimeError(f"results answered {status}")
    for item in results["files"]:
        target = out / item["subject"] / Path(item["key"]).name
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(item["url"], timeout=60) as response:
            target.write_bytes(response.read())
    return results
