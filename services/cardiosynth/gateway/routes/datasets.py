"""Dataset endpoints: a dataset build (``cardiosynth dataset build`` through the API) as a job.

A dataset is a job like a ``/synthesize`` one, in the same job store, with the same auth, queue cap,
per-key quota on subjects in flight (its subjects x severities), idempotency keys and retention; its
stored request is ``{"kind": "dataset", "spec": {...}, "format": ...}`` and it runs as one stage of
its own (``dataset``) on the SPADE queue (why: :mod:`cardiosynth.workers.dataset_tasks`). So
``/jobs`` lists it and ``/jobs/{id}`` shows it too (with ``kind``); ``/datasets`` are its own views:
only dataset jobs, and results with the card, the plot, checksums and the archive.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response

from cardiosynth.gateway.dataset_schemas import DatasetFileOut, DatasetRequest, DatasetResultsOut
from cardiosynth.gateway.deps import Services, owner, services
from cardiosynth.gateway.metrics import JOBS_SUBMITTED
from cardiosynth.gateway.problems import PROBLEM, ProblemError
from cardiosynth.gateway.routes.jobs import ERRORS, cancel_job, job_out, submit_job, succeeded_result
from cardiosynth.gateway.schemas import JobList, JobOut, Problem, State
from cardiosynth.jobs.base import (
    Job,
    JobState,
)
from cardiosynth.queues import DATASET_STAGE

router = APIRouter(tags=["datasets"])

KIND = DATASET_STAGE  # the stored request's "kind" of a dataset job
SCAN_PAGE = 100
# Links of the results to the card's own files (path inside the dataset -> link name).
CARD_LINKS = {
    "dataset.json": "card",
    "README.md": "readme",
    "SHA256SUMS": "checksums",
    "biomarkers.png": "plot",
    "spec.yaml": "spec",
    "datalist.json": "datalist",
}


def is_dataset(job: Job) -> bool:
    return job.request.get("kind") == KIND


def _own_dataset(job_id: str, who: str, svc: Services) -> Job:
    job = svc.jobs.get(job_id)
    if job is None or job.owner != who or not is_dataset(job):  # another key's is as absent as none
        raise ProblemError(
            404, f"no dataset {job_id!r} for this key (never created, expired or its record lost)"
        )
    return job


def _problem_422(field: str, message: str) -> ProblemError:
    return ProblemError(422, f"{field}: {message}", errors=[{"field": field, "message": message}])


@router.post(
    "/datasets",
    status_code=202,
    response_model=JobOut,
    responses=ERRORS,
    summary="Submit a dataset build (the spec of `cardiosynth dataset build`, as JSON)",
)
def create_dataset(
    body: DatasetRequest,
    response: Response,
    who: Annotated[str, Depends(owner)],
    svc: Annotated[Services, Depends(services)],
    idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
) -> JobOut:
    for kind in ("vae", "spade"):
        version = getattr(body.models, kind)
        try:
            svc.catalog.check(kind, version)  # what the workers can load, pushed models too
        except ValueError as exc:
            raise _problem_422(f"models.{kind}", str(exc)) from None
    territory = body.territory_errors()
    if territory:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in territory)
        raise ProblemError(422, detail, errors=territory)
    weight, quota = body.weight(), svc.settings.max_subjects_in_flight_per_key
    if weight > quota:  # could never be accepted: 422, not 429
        raise _problem_422(
            "pathologies",
            f"this dataset has {weight} subjects x severities, above the per-key quota of {quota}",
        )
    request: dict[str, Any] = {"kind": KIND, "spec": body.spec(), "format": body.format}
    job, created = submit_job(
        svc, who, request, idempotency_key=idempotency_key, weight=weight, quota=quota, stage=DATASET_STAGE
    )
    if created:
        for pathology in sorted({g.pathology for g in body.pathologies}):
            JOBS_SUBMITTED.labels(pathology=pathology).inc()
    response.headers["Location"] = f"/datasets/{job.id}"
    return job_out(job, svc)


@router.get("/datasets", response_model=JobList, responses=ERRORS, summary="List this key's dataset builds")
def list_datasets(
    who: Annotated[str, Depends(owner)],
    svc: Annotated[Services, Depends(services)],
    state: State | None = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobList:
    # The stores index jobs by owner and state, not by kind: the owner's jobs are read page by page
    # and the datasets kept (a key's jobs are bounded by retention, so this is a bounded scan).
    found: list[Job] = []
    start = 0
    while True:
        page, total = svc.jobs.list_jobs(
            who, state=JobState(state) if state else None, offset=start, limit=SCAN_PAGE
        )
        found.extend(j for j in page if is_dataset(j))
        start += SCAN_PAGE  # by the window asked for: a page may be short where a record is gone
        if start >= total:
            break
    items = [job_out(j, svc) for j in found[offset : offset + limit]]
    return JobList(items=items, total=len(found), offset=offset, limit=limit)


@router.get(
    "/datasets/{job_id}",
    response_model=JobOut,
    responses=ERRORS,
    summary="A dataset build's state and progress",
)
def get_dataset(
    job_id: str, who: Annotated[str, Depends(owner)], svc: Annotated[Services, Depends(services)]
) -> JobOut:
    return job_out(_own_dataset(job_id, who, svc), svc)


@router.delete(
    "/datasets/{job_id}",
    response_model=JobOut,
    responses={
        **ERRORS,
        204: {"description": "purged (``purge=true``): the dataset's files and record are deleted"},
    },
    summary="Cancel a dataset build (its files are removed), or purge it with purge=true",
)
def cancel_dataset(
    job_id: str,
    who: Annotated[str, Depends(owner)],
    svc: Annotated[Services, Depends(services)],
    purge: Annotated[bool, Query(description="also delete its files and record (then 404)")] = False,
) -> JobOut | Response:
    """As ``DELETE /jobs/{id}``: 200 with the cancelled job, 409 once finished, 204 with ``purge``.
    The worker stops at its next subject (or engine chunk) and removes what it stored."""
    _own_dataset(job_id, who, svc)
    return cancel_job(job_id, who, svc, purge)


@router.get(
    "/datasets/{job_id}/results",
    response_model=DatasetResultsOut,
    responses={
        **ERRORS,
        410: {"model": Problem, "content": {PROBLEM: {}}, "description": "results expired (retention)"},
    },
    summary="Every file of the built dataset, the card, the plot and the archive",
)
def dataset_results(
    job_id: str, who: Annotated[str, Depends(owner)], svc: Annotated[Services, Depends(services)]
) -> DatasetResultsOut:
    job = _own_dataset(job_id, who, svc)
    result = succeeded_result(job, "dataset", svc)
    ttl = svc.settings.result_url_ttl_s
    files = [
        DatasetFileOut(**f, url=svc.storage.download_url(f["key"], ttl), expires_in=ttl)
        for f in result.get("files", [])
    ]
    links = {CARD_LINKS[f.path]: f.url for f in files if f.path in CARD_LINKS}
    links.update(("archive", f.url) for f in files if f.kind == "archive")
    return DatasetResultsOut(
        job=job.id,
        name=result.get("name", ""),
        format=job.request.get("format", "files"),
        files=files,
        links=links,
        requested=result.get("requested", []),
        made=result.get("made", {}),
        models=result.get("models", {}),
        biomarkers=result.get("biomarkers", {}),
    )
