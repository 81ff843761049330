"""Dependencies: the app's shared objects and the API-key check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request

from cardiosynth.gateway.catalog import ModelCatalog
from cardiosynth.gateway.problems import ProblemError
from cardiosynth.gateway.settings import GatewaySettings
from cardiosynth.jobs.base import JobStore, owner_id
from cardiosynth.jobs.dispatch import Dispatcher
from cardiosynth.storage.base import ObjectStore


@dataclass
class Services:
    settings: GatewaySettings
    jobs: JobStore
    storage: ObjectStore
    dispatcher: Dispatcher
    # The models a request may name: those the workers can load (local registry + object store).
    catalog: ModelCatalog = field(init=False)

    def __post_init__(self) -> None:
        self.catalog = ModelCatalog(self.storage)


# Both dependencies are coroutines: they do no I/O, and a plain ``def`` would cost every request two
# hops through the thread pool (FastAPI runs sync dependencies there).
async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def owner(
    svc: Annotated[Services, Depends(services)],
    x_api_key: Annotated[str | None, Header(description="API key")] = None,
    authorization: Annotated[str | None, Header(description="Bearer API key")] = None,
) -> str:
    """The caller's owner id from ``X-API-Key`` or ``Authorization: Bearer``; 401 otherwise."""
    key = x_api_key
    if key is None and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    given = (key or "").encode("utf-8", "replace")  # bytes: compare_digest refuses non-ASCII str
    if not key or not any(hmac.compare_digest(given, k.encode()) for k in svc.settings.api_key_list()):
        raise ProblemError(401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"})
    return owner_id(key)
