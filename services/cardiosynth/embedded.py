"""The embedded mode: the whole stack on one machine with only Python.

The same gateway and the same two worker kinds as in compose, as separate processes, with Kombu's
filesystem transport as broker, a SQLite job store and a local storage folder, all under one state
folder. :func:`demo` is the README's main command: start, submit, poll, download, stop.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """A running embedded stack."""

    url: str
    api_key: str
    state: Path
    processes: dict[str, subprocess.Popen[bytes]]

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


def stack_env(state: Path, port: int, api_key: str, *, data: Path | None = None) -> dict[str, str]:
    """Environment of every process of an embedded stack rooted at ``state``."""
    env = {
        **os.environ,
        "CARDIOSYNTH_BROKER_URL": "filesystem://",
        "CARDIOSYNTH_BROKER_FOLDER": str(state / "broker"),
        "CARDIOSYNTH_JOB_STORE_URL": f"sqlite:///{state / 'jobs.db'}",
        "CARDIOSYNTH_STORAGE": "local",
        "CARDIOSYNTH_STORAGE_DIR": str(state / "storage"),
        "CARDIOSYNTH_SIGNING_KEY": secrets.token_hex(32),
        "CARDIOSYNTH_API_KEYS": api_key,
        "CARDIOSYNTH_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CARDIOSYNTH_HEARTBEAT_STALE_S": "300",
    }
    if data is not None:
        env["CARDIOSYNTH_DATA_DIR"] = str(data)
    return env


@contextmanager
def running_stack(
    state: Path, *, port: int | None = None, data: Path | None = None, ready_timeout_s: float = 180.0
) -> Iterator[Stack]:
    """Start gateway + VAE worker + SPADE worker; yield once ``/readyz`` answers 200; stop them all."""
    state.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    api_key = secrets.token_urlsafe(24)
    env = stack_env(state, port, api_key, data=data)
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
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, cmd in commands.items():
            with (logs / f"{name}.log").open("ab") as handle:
                processes[name] = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT)
        stack = Stack(f"http://127.0.0.1:{port}", api_key, state, processes)
        deadline = time.monotonic() + ready_timeout_s
        while True:
            for name, proc in processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {logs / (name + '.log')}")
            try:
                status, _ = stack.request("GET", "/readyz")
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stack was not ready after {ready_timeout_s:.0f} s; logs in {logs}")
            time.sleep(0.5)
        yield stack
    finally:
        for proc in processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in processes.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


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
    while True:
        status, job = stack.request("GET", f"/jobs/{job_id}")
        stages = ", ".join(f"{k} {v['done']}/{v['total']}" for k, v in job.get("progress", {}).items())
        line = f"  {job['state']}" + (f": {stages}" if stages else "")
        if line != last:
            echo(line)
            last = line
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(poll_s)
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
