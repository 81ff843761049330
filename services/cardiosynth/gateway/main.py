"""The gateway as an ASGI app configured from the environment: ``uvicorn cardiosynth.gateway.main:app``."""

from __future__ import annotations

from cardiosynth.gateway.app import create_app
from cardiosynth.gateway.settings import GatewaySettings
from cardiosynth.jobs.celery_app import make_celery
from cardiosynth.jobs.celery_dispatch import CeleryDispatcher
from cardiosynth.jobs.factory import open_job_store

settings = GatewaySettings()
# Worker liveness is read from the workers' beats in the job store (not a broker ping).
liveness = open_job_store(settings.job_store(), prefix=settings.job_prefix)
app = create_app(settings, CeleryDispatcher(make_celery(settings), liveness))
