"""GET /jobs/{id}/events: the stream's rules on their own, then a real uvicorn server over the real
(Redis) job store, read by a real HTTP client until the terminal event, and resumed."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cardiosynth.embedded import Stack, free_port, watch
from cardiosynth.gateway.events import (
    HEARTBEAT,
    Event,
    Snapshot,
    StreamLimits,
    frame,
    job_events,
    parse_events,
    parse_last_event_id,
    version_of,
)
from cardiosynth.jobs.base import JobState
from cardiosynth.storage.local import LocalStore
from tests.gateway.conftest import KEY_A, KEY_B, RecordingDispatcher

A = {"X-API-Key": KEY_A}
Api = tuple[TestClient, RecordingDispatcher, LocalStore]


# -- the stream's rules, with a scripted job and a fake clock ----------------------------------------


class Script:
    """Reads return the snapshots in turn (the last one repeats); the clock moves by each sleep."""

    def __init__(self, snaps: list[Snapshot | None]) -> None:
        self.snaps, self.reads, self.now = snaps, 0, 0.0

    async def read(self) -> Snapshot | None:
        snap = self.snaps[min(self.reads, len(self.snaps) - 1)]
        self.reads += 1
        return snap

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(script: Script, last_id: int | None = None, **limits: Any) -> list[bytes]:
    async def collect() -> list[bytes]:
        stream = job_events(
            script.read,
            last_id=last_id,
            limits=StreamLimits(**limits),
            clock=script.clock,
            sleep=script.sleep,
        )
        return [chunk async for chunk in stream]

    return asyncio.run(collect())


def snap(state: str, version: int, done: int = 0) -> Snapshot:
    return Snapshot(json.dumps({"state": state, "done": done}).encode(), version, state)


def events_of(chunks: list[bytes]) -> list[Event]:
    return list(parse_events(b"".join(chunks).decode().splitlines(keepends=True)))


def test_one_event_per_change_until_the_terminal_state() -> None:
    script = Script([snap("queued", 10), snap("queued", 10), snap("running", 20), snap("running", 20),
                     snap("running", 30, 1), snap("succeeded", 40, 2), snap("succeeded", 40, 2)])  # fmt: skip
    chunks = run(script)
    assert chunks[0] == b"retry: 2000\n\n"
    events = events_of(chunks)
    assert [json.loads(e.data)["state"] for e in events] == ["queued", "running", "running", "succeeded"]
    assert [e.id for e in events] == ["10", "20", "30", "40"]
    assert script.reads == 6  # ended at the terminal snapshot: never read again


def test_ids_grow_even_when_the_version_does_not() -> None:
    # A queue-position change keeps the version; a writer with a slower clock may lower it.
    script = Script([snap("queued", 50), Snapshot(b'{"state":"queued","pos":0}', 50, "queued"),
                     snap("running", 40), snap("failed", 60)])  # fmt: skip
    ids = [int(e.id or 0) for e in events_of(run(script))]
    assert ids == [50, 51, 52, 60]


def test_resume_sends_nothing_the_client_has() -> None:
    script = Script([snap("running", 20), snap("running", 20), snap("succeeded", 30)])
    events = events_of(run(script, last_id=20))
    assert [(e.id, json.loads(e.data)["state"]) for e in events] == [("30", "succeeded")]
    # A client further behind gets the current snapshot at once.
    events = events_of(run(Script([snap("running", 20), snap("succeeded", 30)]), last_id=10))
    assert [e.id for e in events] == ["20", "30"]


def test_quiet_streams_beat_and_end_after_max_s() -> None:
    script = Script([snap("running", 20)])
    chunks = run(script, poll_s=1.0, heartbeat_s=5.0, max_s=30.0)
    assert len(events_of(chunks)) == 1
    assert chunks.count(HEARTBEAT) == 5  # at 5, 10, ... 25 s; the stream ends at 30 s
    assert script.now == pytest.approx(30.0)


def test_a_gone_job_or_a_broken_store_ends_the_stream() -> None:
    assert events_of(run(Script([snap("running", 20), None]))) != []
    script = Script([snap("running", 20)])

    async def broken() -> Snapshot | None:
        raise ConnectionError("redis down")

    async def collect() -> list[bytes]:
        stream = job_events(
            broken, last_id=None, limits=StreamLimits(), clock=script.clock, sleep=script.sleep
        )
        return [c async for c in stream]

    assert asyncio.run(collect()) == [b"retry: 2000\n\n"]


def test_parsing_and_framing() -> None:
    assert parse_last_event_id("1764060004000000") == 1764060004000000
    assert parse_last_event_id(" 12 ") == 12
    for bad in (None, "", "abc", "-1", "1" * 21):
        assert parse_last_event_id(bad) is None
    assert version_of(1764060004.25) == 1764060004250000
    with pytest.raises(ValueError, match="one line"):
        frame(1, b"a\nb")
    with pytest.raises(ValueError, match="positive"):
        StreamLimits(poll_s=0)
    text = ": comment\nid: 7\nevent: x\ndata: a\ndata: b\n\ndata: c\n\n"
    assert list(parse_events(text.splitlines())) == [Event("7", "x", "a\nb"), Event("7", "message", "c")]


# -- a real server and a real client --------------------------------------------------------------


@pytest.fixture
def served(api: Api) -> Iterator[tuple[str, FastAPI]]:
    """The gateway app under uvicorn on a free port (as ``cardiosynth up`` runs it), events polled fast."""
    client, _, _ = api
    app: FastAPI = client.app  # type: ignore[assignment]
    settings = app.state.services.settings
    settings.events_poll_s, settings.events_heartbeat_s = 0.05, 0.3
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def read_stream(url: str, headers: dict[str, str], timeout_s: float = 20.0) -> tuple[list[Event], list[str]]:
    """Every event and raw line until the server ends the stream."""
    lines: list[str] = []
    with httpx.stream("GET", url, headers=headers, timeout=timeout_s) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines.extend(response.iter_lines())
    return list(parse_events(lines)), lines


def test_stream_until_the_terminal_event_then_resume(served: tuple[str, FastAPI]) -> None:
    base, app = served
    store = app.state.services.jobs
    job_id = httpx.post(f"{base}/synthesize", json={"pathology": "HCM", "n": 2}, headers=A).json()["id"]

    seen: queue.Queue[Event] = queue.Queue()

    def work() -> None:  # what the workers write, each change once the client has seen the last one
        seen.get(timeout=20)
        store.transition(job_id, JobState.RUNNING)
        for done in (1, 2):
            seen.get(timeout=20)
            store.update(job_id, progress={"store": {"done": done, "total": 2}})
        seen.get(timeout=20)
        store.transition(job_id, JobState.SUCCEEDED, result={"files": [], "biomarkers": {}})

    worker = threading.Thread(target=work)
    worker.start()
    events: list[Event] = []
    with httpx.stream("GET", f"{base}/jobs/{job_id}/events", headers=A, timeout=20) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in parse_events(response.iter_lines()):
            events.append(event)
            seen.put(event)
    worker.join()
    jobs = [json.loads(e.data) for e in events]
    assert [j["state"] for j in jobs] == ["queued", "running", "running", "running", "succeeded"]
    assert [j["progress"] for j in jobs][2:4] == [{"store": {"done": d, "total": 2}} for d in (1, 2)]
    ids = [int(e.id or 0) for e in events]
    assert ids == sorted(set(ids))
    final = httpx.get(f"{base}/jobs/{job_id}", headers=A).json()
    assert jobs[-1] == final  # the same JSON as GET /jobs/{id}

    # Resumed from the running job's last event: only what came after.
    resumed, _ = read_stream(f"{base}/jobs/{job_id}/events", {**A, "Last-Event-ID": str(ids[-2])})
    assert [(e.id, json.loads(e.data)["state"]) for e in resumed] == [(str(ids[-1]), "succeeded")]
    # Resumed from the terminal event: 204, nothing to send (an EventSource stops there).
    done = httpx.get(f"{base}/jobs/{job_id}/events", headers={**A, "Last-Event-ID": str(ids[-1])})
    assert done.status_code == 204
    assert done.content == b""


def test_resume_of_a_running_job_waits_for_news(served: tuple[str, FastAPI]) -> None:
    base, app = served
    store = app.state.services.jobs
    job_id = httpx.post(f"{base}/synthesize", json={"pathology": "DCM", "n": 1}, headers=A).json()["id"]
    store.transition(job_id, JobState.RUNNING)
    with httpx.stream("GET", f"{base}/jobs/{job_id}/events", headers=A, timeout=20) as response:
        first = next(iter(parse_events(response.iter_lines())))
    assert json.loads(first.data)["state"] == "running"

    def finish() -> None:
        time.sleep(0.5)
        store.transition(job_id, JobState.CANCELLED)

    worker = threading.Thread(target=finish)
    worker.start()
    events, _ = read_stream(f"{base}/jobs/{job_id}/events", {**A, "Last-Event-ID": first.id or ""})
    worker.join()
    assert [json.loads(e.data)["state"] for e in events] == ["cancelled"]  # no replay of "running"


def test_a_quiet_stream_beats_and_ends_after_its_longest_time(served: tuple[str, FastAPI]) -> None:
    base, app = served
    app.state.services.settings.events_max_s = 1.5
    job_id = httpx.post(f"{base}/synthesize", json={"pathology": "HCM", "n": 1}, headers=A).json()["id"]
    started = time.monotonic()
    events, lines = read_stream(f"{base}/jobs/{job_id}/events", A)
    assert time.monotonic() - started >= 1.5
    assert [json.loads(e.data)["state"] for e in events] == ["queued"]  # it never moved
    assert lines.count(HEARTBEAT.decode().strip()) >= 2  # every 0.3 s while quiet


def test_events_of_another_key_or_no_job_are_404(served: tuple[str, FastAPI]) -> None:
    base, _ = served
    job_id = httpx.post(f"{base}/synthesize", json={"pathology": "HCM", "n": 1}, headers=A).json()["id"]
    assert httpx.get(f"{base}/jobs/{job_id}/events", headers={"X-API-Key": KEY_B}).status_code == 404
    missing = httpx.get(f"{base}/jobs/{'0' * 32}/events", headers=A)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"{base}/jobs/{job_id}/events").status_code == 401


def test_the_demo_watches_through_the_stream(served: tuple[str, FastAPI], tmp_path: Path) -> None:
    base, app = served
    store = app.state.services.jobs
    app.state.services.settings.events_max_s = 0.5  # the demo's client resumes the stream it loses
    stack = Stack(base, KEY_A, tmp_path, processes={})
    job_id = httpx.post(f"{base}/synthesize", json={"pathology": "HCM", "n": 1}, headers=A).json()["id"]

    def work() -> None:
        time.sleep(1.0)
        store.transition(job_id, JobState.RUNNING)
        time.sleep(1.0)
        store.transition(job_id, JobState.SUCCEEDED, result={"files": [], "biomarkers": {}})

    worker = threading.Thread(target=work)
    worker.start()
    states = [job["state"] for job in watch(stack, job_id, poll_s=5.0)]
    worker.join()
    assert states[0] == "queued"
    assert states[-1] == "succeeded"
    assert "running" in states
