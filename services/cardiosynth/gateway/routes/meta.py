"""Service endpoints: pathologies, models, health, readiness, metrics, local downloads."""

from __future__ import annotations

import json
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, PlainTextResponse, Response
from prometheus_client import generate_latest

from cardiosynth.gateway.deps import Services, services
from cardiosynth.gateway.metrics import REGISTRY
from cardiosynth.gateway.problems import ProblemError
from cardiosynth.gateway.schemas import Health, ModelOut, Problem, WorkerDevice
from cardiosynth.models.catalog import list_models
from cardiosynth.storage.base import content_type
from cardiosynth.storage.local import LocalStore

router = APIRouter(tags=["service"])
log = logging.getLogger(__name__)

PATHOLOGIES = {
    "NOR": "normal heart",
    "DCM": "dilated cardiomyopathy: dilated LV, LVEF < 40 %",
    "HCM": "hypertrophic cardiomyopathy: myocardial thickening (> 15 mm), normal EF",
    "RV": "abnormal right ventricle: dilated RV and/or RVEF < 40 %",
    "MINF": "myocardial infarction: LVEF < 40 %, regional akinesia",
}


@router.get(
    "/pathologies",
    summary="The pathologies that can be synthesized",
    responses={200: {"content": {"application/json": {"example": PATHOLOGIES}}}},
)
def pathologies() -> dict[str, str]:
    return PATHOLOGIES


def worker_devices(svc: Services) -> dict[str, list[WorkerDevice]]:
    """Live workers per queue with their devices: the records workers keep under ``workers/`` in the
    object store (cardiosynth.workers.liveness), for those whose liveness beat is current. Best effort:
    a store that cannot be read leaves the list empty, it never fails the request."""
    out: dict[str, list[WorkerDevice]] = {}
    try:
        keys = svc.storage.list_keys("workers/")
    except Exception as exc:
        log.warning("worker device records unreadable: %s", exc)
        return out
    for key in keys:
        try:
            record = json.loads(svc.storage.get_bytes(key))
            if not svc.jobs.worker_live(record["queue"], record["name"]):
                continue  # a worker that died without removing its record
            worker = WorkerDevice(**{k: v for k, v in record.items() if k in WorkerDevice.model_fields})
        except Exception as exc:
            log.warning("worker device record %s skipped: %s", key, exc)
            continue
        out.setdefault(worker.queue, []).append(worker)
    return out


@router.get("/models", response_model=list[ModelOut], summary="Installed models with their cards")
def models(svc: Annotated[Services, Depends(services)]) -> list[ModelOut]:
    """Every installed model, with the live workers of its kind's queue and the device each runs on."""
    workers = worker_devices(svc)
    out = []
    for kind, version, path in list_models():
        card_file = path / "card.json"
        card = json.loads(card_file.read_text(encoding="utf-8")) if card_file.is_file() else {}
        out.append(ModelOut(kind=kind, version=version, card=card, workers=workers.get(kind, [])))
    # And those pushed to the object store (`cardiosynth models push`): the workers load them too.
    local = {(m.kind, m.version) for m in out}
    try:
        pushed = sorted(svc.catalog.pushed() - local)
    except Exception as exc:  # best effort, as the worker records: the local models are still listed
        log.warning("pushed models unlisted: %s", exc)
        pushed = []
    for kind, version in pushed:
        try:
            card = json.loads(svc.storage.get_bytes(f"models/{kind}/{version}/card.json"))
        except (KeyError, ValueError):
            card = {}
        out.append(ModelOut(kind=kind, version=version, card=card, workers=workers.get(kind, [])))
    return out


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}}, summary="Readiness")
def readyz(svc: Annotated[Services, Depends(services)], response: Response) -> Health:
    checks: dict[str, str] = {}
    try:
        svc.jobs.ping()
        svc.dispatcher.ping()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unavailable: {type(exc).__name__}"
    try:
        svc.storage.ping()
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"unavailable: {type(exc).__name__}"
    if checks["broker"] == "ok":
        try:
            live = svc.dispatcher.workers()
        except Exception:
            live = {}
        for queue in ("vae", "spade"):
            checks[f"workers_{queue}"] = "ok" if live.get(queue, 0) > 0 else "none"
    ready = all(v == "ok" for v in checks.values())
    if not ready:
        response.status_code = 503
    return Health(status="ok" if ready else "unavailable", checks=checks)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics",
    responses={
        200: {
            "content": {"text/plain": {"example": 'cardiosynth_jobs_submitted_total{pathology="HCM"} 3.0\n'}}
        }
    },
)
def metrics() -> PlainTextResponse:
    return PlainTextResponse(generate_latest(REGISTRY).decode(), media_type="text/plain; version=0.0.4")


@router.get(
    "/files/{key:path}",
    summary="Download through a signed link (local storage only)",
    responses={
        200: {"content": {"application/gzip": {"example": "(a .nii.gz file)"}}, "description": "the file"},
        403: {"model": Problem, "description": "link invalid or expired"},
        404: {"model": Problem, "description": "no such file"},
    },
)
def download(
    key: str,
    svc: Annotated[Services, Depends(services)],
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(max_length=128)],
) -> FileResponse:
    store = svc.storage
    if not isinstance(store, LocalStore):
        raise ProblemError(404, "downloads are served by the object store")
    try:
        valid = store.verify(key, expires, signature)
    except ValueError:
        valid = False
    if not valid:
        raise ProblemError(403, "link invalid or expired")
    try:
        path = store.path(key)
    except ValueError:
        raise ProblemError(404, "no such file") from None
    if not path.is_file():
        raise ProblemError(404, "no such file")
    return FileResponse(path, media_type=content_type(key), filename=path.name)
