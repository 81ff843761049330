"""How the gateway hands jobs to the workers (Celery in the service; anything with this shape in tests)."""

from __future__ import annotations

from typing import Any, Protocol


class Dispatcher(Protocol):
    def submit(self, job_id: str, request: dict[str, Any]) -> None:
        """Send the job's first task to the ``vae`` queue (ids and parameters only, never arrays)."""

    def resume(self, job_id: str, stage: str) -> None:
        """Send the task of ``stage`` again (and the stages after it): its worker died. ``"archive"``:
        build a succeeded job's archive (:mod:`cardiosynth.jobs.archive`)."""

    def cancel(self, job_id: str) -> None:
        """Revoke the job's queued and running tasks, best effort: workers obey the job store's
        cancelled state at their next check whether or not the revoke reaches them."""

    def workers(self) -> dict[str, int]:
        """Live workers per queue (``{"vae": 1, "spade": 1}``), for readiness."""

    def ping(self) -> None:
        """Raise ``ConnectionError`` when the broker does not answer."""
