"""The gateway as an ASGI app configured from the environment: ``uvicorn cardiosynth.gateway.main:app``."""

from __future__ import annotations

from cardiosynth.gateway.app import create_app
from cardiosynth.gateway.settings import GatewaySettings
from cardiosynth.jobs.celery_dispatch import CeleryDispatcher
from cardiosynth.workers.app import make_celery

settings = GatewaySettings()
app = create_app(settings, CeleryDispatcher(make_celery(settings)))
