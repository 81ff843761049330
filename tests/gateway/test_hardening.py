"""Gateway faults found by the adversarial probe (issue 15): every failure is an HTTP answer on an
open connection, oversized input is refused before it is stored, errors do not echo it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from cardiosynth.gateway.metrics import REQUESTS
from cardiosynth.storage.local import LocalStore
from tests.gateway.conftest import KEY_A, RecordingDispatcher

A = {"X-API-Key": KEY_A}
Api = tuple[TestClient, RecordingDispatcher, LocalStore]


def _strict(client: TestClient) -> TestClient:
    # raise_server_exceptions=True: an exception that escapes the app (and so closes the connection
    # under uvicorn) fails the test instead of being turned into a 500 by the test client.
    return TestClient(client.app, raise_server_exceptions=True)


def _count(route: str, status: str) -> float:
    return REQUESTS.labels("GET", route, status)._value.get()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (redis.exceptions.ConnectionError("redis gone"), 503),
        (sqlite3.OperationalError("database is locked"), 503),
        (ConnectionError("refused"), 503),
        (RuntimeError("a bug"), 500),
    ],
)
def test_unhandled_errors_are_answered_not_raised(
    api: Api, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int
) -> None:
    client, _, _ = api
    strict = _strict(client)
    jobs = client.app.state.services.jobs  # type: ignore[attr-defined]

    def broken(job_id: str, **_: object) -> None:
        raise error

    monkeypatch.setattr(jobs, "get", broken)
    before = _count("/jobs/{job_id}", str(status))
    r = strict.get("/jobs/0123456789abcdef0123456789abcdef", headers=A)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    assert "redis gone" not in r.text
    assert "a bug" not in r.text
    if status == 503:
        assert r.headers["Retry-After"] == "5"
    assert _count("/jobs/{job_id}", str(status)) == before + 1  # the metrics see it


def test_body_over_the_limit_is_413_before_parsing(api: Api) -> None:
    client, dispatcher, _ = api
    limit = client.app.state.services.settings.max_body_bytes  # type: ignore[attr-defined]
    body = b'{"pathology": "HCM", "n": 1, "model": "' + b"x" * limit + b'"}'
    r = client.post("/synthesize", content=body, headers={**A, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert str(limit) in r.json()["detail"]
    assert dispatcher.submitted == []


def test_streamed_body_without_length_is_413(api: Api) -> None:
    client, dispatcher, _ = api
    limit = client.app.state.services.settings.max_body_bytes  # type: ignore[attr-defined]

    def chunks() -> Iterator[bytes]:
        yield b'{"pathology": "HCM", "n": 1, "base_subjects": ["'
        for _ in range(limit // 1000 + 2):
            yield b"p" * 1000
        yield b'"]}'

    r = client.post("/synthesize", content=chunks(), headers={**A, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert dispatcher.submitted == []


def test_long_subject_names_are_refused_without_echo(api: Api) -> None:
    client, dispatcher, _ = api
    name = "p" * 5000
    r = client.post("/synthesize", json={"pathology": "HCM", "n": 1, "base_subjects": [name]}, headers=A)
    assert r.status_code == 422
    assert "base_subjects" in r.json()["detail"]
    assert name not in r.text
    assert dispatcher.submitted == []
    ok = client.post(
        "/synthesize", json={"pathology": "HCM", "n": 1, "base_subjects": ["patient061"]}, headers=A
    )
    assert ok.status_code == 202
