"""The embedded stack's identity across restarts and its supervisor (issue 15, item 7): fast, no
stack started (the processes supervised here are tiny Python sleepers)."""

from __future__ import annotations

import json
import logging
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

from cardiosynth.embedded import IDENTITY_FILE, Supervisor, load_identity


def test_the_identity_is_made_once_private_and_reused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = load_identity(state)
    path = state / IDENTITY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.api_key) >= 24
    assert len(first.signing_key) >= 32
    assert load_identity(state) == first  # a restart: the same key and signing secret
    given = load_identity(state, api_key="my-own-key-0123456789")
    assert given.api_key == "my-own-key-0123456789"
    assert given.signing_key == first.signing_key  # links signed before stay valid
    assert load_identity(state).api_key == "my-own-key-0123456789"
    assert json.loads(path.read_text()) == {"api_key": given.api_key, "signing_key": given.signing_key}


def test_an_identity_file_readable_by_others_is_made_private(tmp_path: Path) -> None:
    first = load_identity(tmp_path)
    (tmp_path / IDENTITY_FILE).chmod(0o644)
    assert load_identity(tmp_path) == first
    assert stat.S_IMODE((tmp_path / IDENTITY_FILE).stat().st_mode) == 0o600


def _wait_started(supervisor: Supervisor, name: str, timeout_s: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if name in (started := supervisor.check()):
            return started
        time.sleep(0.02)
    raise AssertionError(f"{name} was not restarted within {timeout_s} s")


def test_a_dead_process_is_restarted_with_a_growing_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor({"worker-vae": sleeper, "gateway": sleeper}, {}, tmp_path / "logs",
                            backoff_s=(0.2, 1.0), healthy_after_s=30)  # fmt: skip
    supervisor.start_all()
    try:
        victim = supervisor.processes["worker-vae"]
        other = supervisor.processes["gateway"].pid
        assert supervisor.check() == []  # all alive: nothing to do
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        with caplog.at_level(logging.WARNING, logger="cardiosynth.embedded"):
            died = time.monotonic()
            assert _wait_started(supervisor, "worker-vae") == ["worker-vae"]
            first_delay = time.monotonic() - died
        assert first_delay >= 0.2
        replacement = supervisor.processes["worker-vae"]
        assert replacement.pid != victim.pid
        assert replacement.poll() is None
        assert supervisor.processes["gateway"].pid == other  # the rest of the stack is untouched
        assert any("worker-vae exited with -9; restarting it in" in r.message for r in caplog.records)
        assert any("worker-vae restarted (restart 1)" in r.message for r in caplog.records)
        replacement.send_signal(signal.SIGKILL)  # dies again at once: the next delay is longer
        replacement.wait(timeout=10)
        died = time.monotonic()
        _wait_started(supervisor, "worker-vae")
        assert time.monotonic() - died >= 1.0
        assert supervisor.restarts["worker-vae"] == 2
    finally:
        supervisor.stop_all(timeout_s=10)
    assert all(p.poll() is not None for p in supervisor.processes.values())


def test_backoff_must_be_given(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backoff_s"):
        Supervisor({}, {}, tmp_path, backoff_s=())
