"""A real cardiosynth stack on loopback for the benchmarks and the chaos suite.

Every process here is started by this module and stopped by it: a ``redis-server`` of its own on a
free port (never the machine's Redis), the gateway under uvicorn, Celery workers, or ``cardiosynth
up``. Each child gets its own process group, so a stop also reaches anything it spawned, and
nothing outside those groups is ever signalled.

Two modes, the same gateway and workers:

- ``redis``: Redis is job store and broker, local storage;
- ``embedded``: the environment of ``cardiosynth up`` (SQLite job store, Kombu filesystem broker).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

from cardiosynth.embedded import free_port, stack_env

PYTHON = sys.executable


class Proc:
    """A child process in a process group of its own, logging to ``log``."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as handle:
            self.popen = subprocess.Popen(
                cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the process (a crash: no cleanup, no acknowledgement)."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL of the whole group after ``timeout_s`` (``cardiosynth up``'s workers
        with it). The group is signalled only while its leader is unreaped, so its id is still ours."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_for(predicate: Callable[[], Any], timeout_s: float, every_s: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy or ``timeout_s`` passes (then ``None``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except (httpx.HTTPError, redis.RedisError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(every_s)


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port`` with its files in ``folder``; restartable."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("needs redis-server on PATH")
        self.binary = binary
        self.folder = folder
        self.port = port or free_port()
        self.proc: Proc | None = None
        self.persistent = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)

    def start(self, *, persistent: bool) -> None:
        """Start; ``persistent``: append-only file fsynced every write (what compose runs), else nothing on
        disk (a restart empties it)."""
        self.persistent = persistent
        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--save",
            "",
            "--protected-mode",
            "yes",
        ]
        cmd += ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
        self.proc = Proc("redis", cmd, dict(os.environ), self.folder / "redis.log")
        if not wait_for(lambda: self.client().ping(), 15, 0.05):
            raise RuntimeError(f"redis-server did not start: {self.proc.tail()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def wipe(self) -> None:
        """Remove the persisted files (the next start is empty)."""
        for path in self.folder.iterdir():
            if path.name != "redis.log":
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def used_memory(self) -> int:
        return int(self.client().info("memory")["used_memory"])


class Stack:
    """Gateway and workers of one mode over ``root``; start and stop parts as a scenario needs."""

    def __init__(
        self,
        root: Path,
        *,
        mode: str,
        data: Path,
        keys: list[str],
        settings: dict[str, str] | None = None,
        persistent_redis: bool = True,
    ) -> None:
        if mode not in ("redis", "embedded"):
            raise ValueError(f"mode must be 'redis' or 'embedded', got {mode!r}")
        self.root = root
        self.mode = mode
        self.keys = keys
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis: RedisServer | None = None
        root.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("CARDIOSYNTH_")}
        if mode == "redis":
            self.redis = RedisServer(root / "redis")
            self.redis.start(persistent=persistent_redis)
            env = {
                **base,
                "CARDIOSYNTH_REDIS_URL": self.redis.url,
                "CARDIOSYNTH_STORAGE_DIR": str(root / "storage"),
                "CARDIOSYNTH_SIGNING_KEY": "c" * 32,
                "CARDIOSYNTH_PUBLIC_URL": self.url,
            }
        else:
            embedded = stack_env(root, self.port, "unused")
            env = {**base, **{k: v for k, v in embedded.items() if k.startswith("CARDIOSYNTH_")}}
        env.update(
            {
                "CARDIOSYNTH_API_KEYS": ",".join(keys),
                "CARDIOSYNTH_DATA_DIR": str(data),
                "XDG_CACHE_HOME": str(root / "cache"),
                "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
            }
        )
        env.update(settings or {})
        self.env = env
        self.storage = Path(env["CARDIOSYNTH_STORAGE_DIR"])
        self.gateway: Proc | None = None
        self.workers: dict[str, Proc] = {}
        self._serial = 0

    # -- processes ---------------------------------------------------------------------------------

    def start_gateway(self, timeout_s: float = 60.0) -> None:
        cmd = [
            PYTHON,
            "-m",
            "uvicorn",
            "cardiosynth.gateway.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        self.gateway = Proc("gateway", cmd, self.env, self.root / "logs" / "gateway.log")

        def up() -> bool:
            if self.gateway is None or not self.gateway.alive():
                raise RuntimeError(f"the gateway exited: {self.gateway.tail() if self.gateway else ''}")
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200

        if not wait_for(up, timeout_s):
            raise RuntimeError(f"the gateway did not answer /healthz in {timeout_s:.0f} s")

    def start_worker(self, queue: str) -> Proc:
        """A solo-pool worker for ``queue`` (``vae`` or ``spade``), replacing any stopped one."""
        self._serial += 1
        name = f"{queue}{self._serial}@chaos"
        cmd = [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "cardiosynth.workers.tasks",
            "worker",
            "-Q",
            queue,
            "--pool",
            "solo",
            "-n",
            name,
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ]
        proc = Proc(name, cmd, self.env, self.root / "logs" / f"{queue}.log")
        self.workers[queue] = proc
        return proc

    def stop_worker(self, queue: str) -> None:
        proc = self.workers.pop(queue, None)
        if proc is not None:
            proc.stop()

    def close(self) -> None:
        for proc in list(self.workers.values()):
            proc.stop()
        self.workers.clear()
        if self.gateway is not None:
            self.gateway.stop()
        if self.redis is not None:
            self.redis.stop()

    # -- HTTP --------------------------------------------------------------------------------------

    def client(self, key: str, timeout_s: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key}, timeout=timeout_s)

    def wait_ready(self, timeout_s: float = 180.0) -> bool:
        """``/readyz`` 200 (both worker kinds answer), or ``False`` after ``timeout_s``."""

        def ready() -> bool:
            for proc in self.workers.values():
                if not proc.alive():
                    raise RuntimeError(f"worker {proc.name} exited: {proc.tail()}")
            return httpx.get(self.url + "/readyz", timeout=10).status_code == 200

        return bool(wait_for(ready, timeout_s, 0.5))

    def job_files(self, job_id: str) -> list[str]:
        """Every file stored under the job's prefix (outputs and work files), relative to storage."""
        folder = self.storage / "jobs" / job_id
        if not folder.is_dir():
            return []
        return sorted(p.relative_to(self.storage).as_posix() for p in folder.rglob("*") if p.is_file())


class Up:
    """``cardiosynth up`` as a user runs it: one process that starts the embedded stack."""

    KEY = re.compile(r"API key: (\S+)")

    def __init__(self, state: Path, data: Path, port: int | None = None) -> None:
        self.state = state
        self.data = data
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Proc | None = None
        self.starts = 0
        base = {k: v for k, v in os.environ.items() if not k.startswith("CARDIOSYNTH_")}
        self.env = {**base, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(state.parent / "cache")}

    def start(self, timeout_s: float = 240.0) -> str:
        """Start and wait for the "API key" line; return that key."""
        self.starts += 1
        cmd = [
            PYTHON,
            "-m",
            "cardiosynth",
            "up",
            "--state",
            str(self.state),
            "--port",
            str(self.port),
            "--data",
            str(self.data),
        ]
        log = self.state.parent / f"up-{self.starts}.log"
        self.proc = Proc("up", cmd, self.env, log)

        def key() -> str | None:
            if self.proc is None or not self.proc.alive():
                raise RuntimeError(f"cardiosynth up exited: {self.proc.tail() if self.proc else ''}")
            found = self.KEY.search(log.read_text(errors="replace"))
            return found.group(1) if found else None

        found = wait_for(key, timeout_s, 0.5)
        if not found:
            raise RuntimeError(f"cardiosynth up printed no API key in {timeout_s:.0f} s")
        return str(found)

    def children(self) -> dict[str, int]:
        """The stack's processes by role (``gateway``, ``worker-vae``, ``worker-spade``) -> pid."""
        if self.proc is None:
            return {}
        found: dict[str, int] = {}
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                for pid in (task / "children").read_text().split():
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    text = b" ".join(cmdline).decode(errors="replace")
                    if "uvicorn" in text:
                        found["gateway"] = int(pid)
                    elif "-Q vae" in text:
                        found["worker-vae"] = int(pid)
                    elif "-Q spade" in text:
                        found["worker-spade"] = int(pid)
        return found

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout_s=40)
