"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cardiosynth import __version__
from cardiosynth.gateway.deps import Services
from cardiosynth.gateway.limits import BodyLimit
from cardiosynth.gateway.observe import Observe
from cardiosynth.gateway.problems import install
from cardiosynth.gateway.routes import datasets, jobs, meta, ui
from cardiosynth.gateway.settings import GatewaySettings
from cardiosynth.jobs.dispatch import Dispatcher
from cardiosynth.jobs.factory import open_job_store
from cardiosynth.jobs.reaper import expire_results, redeliver_or_fail
from cardiosynth.storage.base import ObjectStore

log = logging.getLogger(__name__)


def create_app(
    settings: GatewaySettings, dispatcher: Dispatcher, *, storage: ObjectStore | None = None
) -> FastAPI:
    """The gateway app over ``settings``' Redis and storage, sending jobs through ``dispatcher``."""
    if not settings.api_key_list():
        raise ValueError("CARDIOSYNTH_API_KEYS is empty: set at least one API key")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The reaper: a stage whose worker died without a word (OOM kill, lost machine) is redelivered
        # once its heartbeat is older than heartbeat_stale_s, and the job failed after a few such
        # deaths, instead of staying "running" forever (cardiosynth.jobs.reaper).
        async def reap() -> None:
            interval = min(settings.heartbeat_stale_s / 4, 30.0)
            while True:
                await asyncio.sleep(interval)
                try:
                    svc, stale_s = app.state.services, settings.heartbeat_stale_s
                    await asyncio.to_thread(
                        redeliver_or_fail, svc.jobs, svc.dispatcher, stale_s, storage=svc.storage
                    )
                    # Output retention: finished jobs past result_retention_s lose their files.
                    await asyncio.to_thread(
                        expire_results, svc.jobs, svc.storage, settings.result_retention_s
                    )
                except Exception as exc:
                    log.warning("reaper: %s", exc)

        task = asyncio.create_task(reap())
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(
        lifespan=lifespan,
        title="cardiosynth",
        version=__version__,
        description="Labelled cardiac MR data with a chosen pathology: submit a job, poll it, download NIfTI",
    )
    app.state.services = Services(
        settings=settings,
        jobs=open_job_store(settings.job_store(), prefix=settings.job_prefix),
        storage=storage if storage is not None else settings.build_storage(),
        dispatcher=dispatcher,
    )
    install(app)
    app.include_router(jobs.router)
    app.include_router(datasets.router)
    app.include_router(meta.router)
    app.include_router(ui.router)  # the web page, /ui (static files with their own CSP)

    # Inside the metrics middleware (added later = outer), so refusals are counted; an oversized body
    # is refused before any route or store sees it.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    # Outermost: counts and times every request, refusals included, and answers what no route
    # handled (cardiosynth.gateway.observe).
    app.add_middleware(Observe)

    return app
