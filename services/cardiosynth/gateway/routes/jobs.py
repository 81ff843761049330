"""Job endpoints: submit, poll, list, cancel, results."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, StreamingResponse

from cardiosynth.gateway.deps import Services, owner, services
from cardiosynth.gateway.etag import conditional_json
from cardiosynth.gateway.events import MEDIA_TYPE, Snapshot, StreamLimits, parse_last_event_id, version_of
from cardiosynth.gateway.events import job_events as job_events_stream
from cardiosynth.gateway.metrics import JOBS_SUBMITTED
from cardiosynth.gateway.problems import PROBLEM, ProblemError
from cardiosynth.gateway.results import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Manifest,
    ManifestFile,
    ResultFile,
    ResultsPage,
    checksummed,
    manifest_key,
    page,
)
from cardiosynth.gateway.schemas import (
    ArchiveOut,
    JobList,
    JobOut,
    Problem,
    State,
    SynthesizeRequest,
)
from cardiosynth.jobs.archive import READY, archive_key, request_archive
from cardiosynth.jobs.base import (
    TERMINAL,
    IdempotencyConflictError,
    IdempotencyInProgressError,
    Job,
    JobState,
    QueueFullError,
    StoredBytesQuotaError,
    TransitionRefusedError,
    subject_weight,
)
from cardiosynth.queues import ARCHIVE_STAGE, STAGES

router = APIRouter(tags=["jobs"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM: {}}, "description": text}
    for code, text in (
        (401, "missing or unknown API key"),
        (404, "no such job for this key"),
        (409, "conflict with the job's state"),
        (422, "invalid request"),
        (429, "too many queued jobs, subjects in flight or stored bytes for this key"),
        (503, "broker or storage unavailable"),
    )
}


def job_out(job: Job, svc: Services) -> JobOut:
    dataset = job.request.get("kind") == "dataset"
    base = "/datasets" if dataset else "/jobs"  # a dataset's own views (routes/datasets.py)
    return JobOut(
        id=job.id,
        kind="dataset" if dataset else "synthesize",
        state=job.state.value,
        queue_position=svc.jobs.queue_position(job.id) if job.state is JobState.QUEUED else None,
        request=job.request,
        progress=job.progress,
        timings=job.timings,
        created=job.created,
        updated=job.updated,
        error=Problem(**job.error) if job.error else None,
        expired=job.expired_at is not None,
        expired_at=job.expired_at,
        stored_bytes=job.stored_bytes if job.expired_at is None else 0,
        links={"self": f"{base}/{job.id}", "results": f"{base}/{job.id}/results", "job": f"/jobs/{job.id}"},
        archive=archive_out(job.id, job.archive) if job.archive else None,
    )


def archive_out(job_id: str, recorded: dict[str, Any]) -> ArchiveOut:
    download = f"/jobs/{job_id}/archive" if recorded.get("state") == READY else None
    return ArchiveOut(**{**recorded, "download": download})


def _own_job(job_id: str, who: str, svc: Services, *, result: bool = False) -> Job:
    """The caller's job; its result (megabytes for a large job's file list) only when asked for."""
    job = svc.jobs.get(job_id, result=result)
    if job is None or job.owner != who:  # another key's job is as absent as a missing one
        # Also what a job whose record is gone (expired, or lost with a Redis that kept nothing on
        # disk) answers: never a 500 for a half record.
        raise ProblemError(404, f"no job {job_id!r} for this key (never created, expired or its record lost)")
    return job


@router.post(
    "/synthesize",
    status_code=202,
    response_model=JobOut,
    responses=ERRORS,
    summary="Submit a synthesis job",
)
def synthesize(
    body: SynthesizeRequest,
    response: Response,
    who: Annotated[str, Depends(owner)],
    svc: Annotated[Services, Depends(services)],
    idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
) -> JobOut:
    for kind in ("vae", "spade"):
        try:
            svc.catalog.check(kind, body.model)  # what the workers can load, pushed models too
        except ValueError as exc:
            raise ProblemError(
                422, f"model: {exc}", errors=[{"field": "model", "message": str(exc)}]
            ) from None
    request = body.model_dump(mode="json")
    weight, quota = subject_weight(request), svc.settings.max_subjects_in_flight_per_key
    if weight > quota:  # could never be accepted: no point retrying, so 422 and not 429
        raise ProblemError(
            422,
            f"this job has {weight} subjects x severities, above the per-key quota of {quota}",
            errors=[{"field": "n", "message": f"n x trajectory must be <= {quota}"}],
        )
    job, created = submit_job(svc, who, request, idempotency_key=idempotency_key, weight=weight, quota=quota)
    if created:
        JOBS_SUBMITTED.labels(pathology=body.pathology).inc()
    response.headers["Location"] = f"/jobs/{job.id}"
    return job_out(job, svc)


@router.get("/jobs", response_model=JobList, responses=ERRORS, summary="List this key's jobs")
def list_jobs(
    who: Annotated[str, Depends(owner)],
    svc: Annotated[Services, Depends(services)],
    state: State | None = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobList:
    jobs, total = svc.jobs.list_jobs(
        who, state=JobState(state) if state else None, offset=offset, limit=limit
    )
    return JobList(items=[job_out(j, svc) for j in jobs], total=total, offset=offset, limit=limit)


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    responses={
        **ERRORS,
        304: {"description": "unchanged: the ETag given in If-None-Match is still the job's (no body)"},
    },
    summary="A job's state and progress",
)
def get_job(
    job_id: str,
    who: Annotated[str, Depends(owner)],
    svc: Annotated[Services, Depends(services)],
    if_none_match: Annotated[
        str | None, Header(max_length=1024, description="the ETag of the copy the client holds")
    ] = None,
) -> Response:
    """The job; its ``ETag`` changes whenever anything in the answer does, so a poll with
    ``If-None-Match`` costs a 304 without a body while nothing changed."""
    body = job_out(_own_job(job_id, who, svc), svc).model_dump_json().encode()
    return conditional_json(body, if_none_match)


EVENTS_EXAMPLE = (
    "retry: 2000\n\n"
    'id: 1764060004000000\ndata: {"id":"3f2a9c0d5e6b4a718293a4b5c6d7e8f9","state":"running",'
    '"progress":{"encode":{"done":1,"total":5}},...}\n\n'
    ": keep-alive\n\n"
    'id: 1764060031000000\ndata: {"id":"3f2a9c0d5e6b4a718293a4b5c6d7e8f9","state":"succeeded",...}\n\n'
)


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        **ERRORS,
        200: {
            "content": {MEDIA_TYPE: {"example": EVENTS_EXAMPLE}},
            "description": "Server-Sent Events: one per change of the job (data: the GET /jobs/{id} JSON, "
            "id: its version), a keep-alive comment while nothing changes, the end after a terminal state",
        },
        204: {"description": "the job ended in the version named by Last-Event-ID: nothing more to send"},
    },
    summary="Watch a job: Server-Sent Events until it ends",
)
async def job_events(
    job_id: str,
    who: Annotated[str, Depends(owner)],
    svc: Annotated[Services, Depends(services)],
    last_event_id: Annotated[
        str | None, Header(max_length=64, description="resume after this event (the id last received)")
    ] = None,
) -> Response:
    """State and progress as they change, without polling the API: the stream polls the job store
    (every ``CARDIOSYNTH_EVENTS_POLL_S``) and ends after the job's terminal state, or after
    ``CARDIOSYNTH_EVENTS_MAX_S`` (reconnect with ``Last-Event-ID``: what the client has is not sent
    again)."""

    def snapshot() -> Snapshot | None:
        job = svc.jobs.get(job_id, result=False)
        if job is None or job.owner != who:
            return None
        body = job_out(job, svc).model_dump_json().encode()
        return Snapshot(body, version_of(job.updated), job.state.value)

    first = await run_in_threadpool(_own_job, job_id, who, svc)  # 404 / 503 before the stream starts
    last = parse_last_event_id(last_event_id)
    if first.state in TERMINAL and last == version_of(first.updated):
        return Response(status_code=204)
    settings = svc.settings
    limits = StreamLimits(settings.events_poll_s, settings.events_heartbeat_s, settings.events_max_s)
    stream = job_events_stream(lambda: run_in_threadpool(snapshot), last_id=last, limits=limits)
    # No caching, and no buffering by a proxy (nginx honours X-Accel-Buffering): events go out at once.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type=MEDIA_TYPE, headers=headers)


@router.delete(
    "/jobs/{job_id}",
    response_model=JobOut,
    responses={
        **ERRORS,
        204: {"description": "purged (``purge=true``): the job's files and record are deleted"},
    },
    summary="Cancel a job, or purge it with purge=true",
)
def cancel_job(
    job_id: str,
    who: Annotated[str, Depends(owner)],
    svc: Annotated[Services, Depends(services)],
    purge: Annotated[bool, Query(description="also delete the job's files and record (then 404)")] = False,
) -> JobOut | Response:
    """Cancel a queued or running job (200 with the cancelled job; 409 when it has finished already).

    With ``purge=true`` the job, in any state, is cancelled first if it is still live, then its stored
    files and its record are deleted: the answer is 204 with no body, and the job is 404 from then on."""
    job = _own_job(job_id, who, svc)
    if job.state in TERMINAL and not purge:
        raise ProblemError(409, f"job {job_id} is already {job.state.value}")
    if job.state not in TERMINAL:
        try:
            job = svc.jobs.transition(job_id, JobState.CANCELLED)
        except TransitionRefusedError as exc:
            if not purge:
                raise ProblemError(409, str(exc)) from None
            # It finished meanwhile: purging it is what was asked anyway.
        else:
            svc.dispatcher.cancel(job_id)
    # What the job wrote so far goes with it. A worker in the middle of a stage notices the cancel at
    # its next check (between batches and subjects) and removes what it wrote after this.
    for key in svc.storage.list_keys(f"jobs/{job_id}/"):
        svc.storage.delete(key)
    if purge:
        try:
            svc.jobs.purge(job_id)
        except TransitionRefusedError as exc:  # not finished: only a concurrent redelivery gets here
            raise ProblemError(409, str(exc)) from None
        return Response(status_code=204)
    return job_out(job, svc)


@router.get(
    "/jobs/{job_id}/results",
    response_model=ResultsPage,
    responses={
        **ERRORS,
        410: {"model": Problem, "content": {PROBLEM: {}}, "description": "results expired (retention)"},
    },
    summary="Output files and biomarkers, a page at a time",
)
def results(
    job_id: str,
    who: Annotated[str, Depends(owner)],
    svc: Annotated[Services, Depends(services)],
    cursor: Annotated[
        str | None,
        Query(max_length=1024, description="the `next` of the page before; absent: the first page"),
    ] = None,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_LIMIT,
            description=f"files per page (default and most: {DEFAULT_LIMIT}; a job of up to "
            f"{DEFAULT_LIMIT} files is one page)",
        ),
    ] = DEFAULT_LIMIT,
) -> ResultsPage:
    """The job's files in key order with expiring download URLs, ``limit`` at a time: follow ``next``
    (``?cursor=``) until it is null. Each page carries the biomarkers of the subjects it lists."""
    job = _own_job(job_id, who, svc, result=True)
    result = succeeded_result(job, "job", svc)
    everything: list[dict[str, Any]] = result.get("files", [])
    try:
        items, following = page(everything, job.id, cursor, limit)
    except ValueError as exc:
        raise ProblemError(422, str(exc), errors=[{"field": "cursor", "message": str(exc)}]) from None
    ttl = svc.settings.result_url_ttl_s
    files = [ResultFile(**f, url=svc.storage.download_url(f["key"], ttl), expires_in=ttl) for f in items]
    biomarkers: dict[str, Any] = result.get("biomarkers", {})
    if cursor is not None or following is not None:  # one page of several: its subjects' biomarkers
        listed = {f["subject"] for f in items}
        biomarkers = {s: b for s, b in biomarkers.items() if s in listed}
    return ResultsPage(job=job.id, files=files, biomarkers=biomarkers, total=len(everything), next=following)


@router.get(
    "/jobs/{job_id}/manifest",
    response_model=Manifest,
    responses={
        **ERRORS,
        304: {"description": "unchanged: the ETag given in If-None-Match is still the manifest's"},
        410: {"model": Problem, "content": {PROBLEM: {}}, "description": "results expired (retention)"},
    },
    summary="Every stored file of a job with its size and SHA-256, as one JSON download",
)
def manifest(
    job_id: str,
    who: Annotated[str, Depends(owner)],
    svc: Annotated[Services, Depends(services)],
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """Sizes and checksums are those the workers recorded as they stored each file; a job stored
    before they did so has its files read back and hashed once, and that manifest is kept with the
    job's files (``jobs/<id>/manifest.json``)."""
    job = _own_job(job_id, who, svc, result=True)
    result = succeeded_result(job, "job", svc)
    key = manifest_key(job.id)
    files, computed = checksummed(
        result.get("files", []), svc.storage.get_bytes, cached=lambda: svc.storage.get_bytes(key)
    )
    body = Manifest(
        job=job.id,
        request=job.request,
        count=len(files),
        total_bytes=sum(f["size"] for f in files),
        files=[ManifestFile(**f) for f in sorted(files, key=lambda f: str(f["key"]))],
        biomarker_summary=result.get("summary"),
    )
    data = body.model_dump_json().encode()
    if computed:  # hashed once: the next call reads the stored manifest
        svc.storage.put_bytes(key, data)
    answer = conditional_json(data, if_none_match)
    answer.headers["Content-Disposition"] = f'attachment; filename="{job.id}-manifest.json"'
    return answer


EXPIRED: dict[int | str, dict[str, Any]] = {
    410: {"model": Problem, "content": {PROBLEM: {}}, "description": "results expired (retention)"}
}


def _succeeded(job: Job, svc: Services) -> None:
    """410 once retention expired the job's files, 409 before it has succeeded (no result read)."""
    if job.expired_at is not None:
        at = datetime.fromtimestamp(job.expired_at, tz=UTC).isoformat(timespec="seconds")
        raise ProblemError(410, f"results expired at {at} (kept {svc.settings.result_retention_s} s)")
    if job.state is not JobState.SUCCEEDED:
        raise ProblemError(409, f"job {job.id} is {job.state.value}; archives are of succeeded jobs")


@router.post(
    "/jobs/{job_id}/archive",
    status_code=202,
    response_model=ArchiveOut,
    responses={**ERRORS, **EXPIRED},
    summary="Build one tar of a succeeded job's files and manifest (by a worker)",
)
def request_job_archive(
    job_id: str, who: Annotated[str, Depends(owner)], svc: Annotated[Services, Depends(services)]
) -> ArchiveOut:
    """Queues the build once: while it is pending, building or ready, a POST answers its state and
    builds nothing more; a failed build is queued again. Follow ``GET /jobs/{id}`` (its ``archive``) or
    this answer's state until ``ready``, then download it from ``GET /jobs/{id}/archive``."""
    job = _own_job(job_id, who, svc)
    if job.request.get("kind") == "dataset":  # built with its own archive (its results' ``links``)
        raise ProblemError(
            409, f"job {job_id} is a dataset build: its archive is in GET /datasets/{job_id}/results"
        )
    _succeeded(job, svc)
    recorded, _ = request_archive(svc.jobs, job.id, lambda: svc.dispatcher.resume(job.id, ARCHIVE_STAGE))
    if recorded is None:  # purged or expired between the read and the write
        raise ProblemError(409, f"job {job_id} no longer has its files (purged or expired)")
    return archive_out(job.id, recorded)


@router.get(
    "/jobs/{job_id}/archive",
    status_code=307,
    response_class=RedirectResponse,
    responses={
        **ERRORS,
        **EXPIRED,
        307: {"description": "ready: Location is an expiring signed URL of the tar (as the results' urls)"},
        200: {
            "content": {"application/x-tar": {"example": "(the tar: <job id>/manifest.json, <job id>/...)"}},
            "description": "the tar, from the signed URL the redirect names (a client that follows it)",
        },
    },
    summary="Download a job's archive (a redirect to its signed URL once ready)",
)
def job_archive(
    job_id: str, who: Annotated[str, Depends(owner)], svc: Annotated[Services, Depends(services)]
) -> Response:
    """307 to the tar's expiring download URL (the same signed links as ``GET /jobs/{id}/results``)
    when it is ready; 404 when none was asked for, 409 while it is pending or building, or failed."""
    job = _own_job(job_id, who, svc)
    _succeeded(job, svc)
    state = (job.archive or {}).get("state")
    if state is None:
        raise ProblemError(404, f"job {job_id} has no archive: ask for one with POST /jobs/{job_id}/archive")
    if state != READY:
        reason = f": {job.archive['error']}" if job.archive and job.archive.get("error") else ""
        raise ProblemError(409, f"the archive of job {job_id} is {state}{reason}")
    url = svc.storage.download_url(archive_key(job.id), svc.settings.result_url_ttl_s)
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})


def succeeded_result(job: Job, noun: str, svc: Services) -> dict[str, Any]:
    """A succeeded job's result; 410 once retention expired it, 409 before it has succeeded."""
    if job.expired_at is not None:
        at = datetime.fromtimestamp(job.expired_at, tz=UTC).isoformat(timespec="seconds")
        raise ProblemError(410, f"results expired at {at} (kept {svc.settings.result_retention_s} s)")
    if job.state is not JobState.SUCCEEDED or job.result is None:
        raise ProblemError(409, f"{noun} {job.id} is {job.state.value}; results exist once it has succeeded")
    return job.result


def submit_job(
    svc: Services,
    who: str,
    request: dict[str, Any],
    *,
    idempotency_key: str | None,
    weight: int,
    quota: int,
    stage: str = STAGES[0],
) -> tuple[Job, bool]:
    """Create a job (``/synthesize`` and ``/datasets`` alike) and hand a new one to the dispatcher;
    ``(job, created)``. The store's refusals become problems with their ``Retry-After``."""
    try:
        # The store looks the idempotency key up first (a retry of an accepted job is answered even
        # when the queue is full), then counts and inserts in one atomic step (the cap and the quotas
        # hold under races).
        job, created = svc.jobs.create(
            who,
            request,
            idempotency_key=idempotency_key,
            max_queued=svc.settings.max_queued_per_key,
            weight=weight,
            max_subjects=quota,
            stage=stage,
            max_stored_bytes=svc.settings.max_stored_bytes_per_key,
        )
    except StoredBytesQuotaError as exc:
        # Retention frees the oldest files within this time at the latest; a purge frees them now.
        retry = str(svc.settings.result_retention_s)
        raise ProblemError(429, str(exc), headers={"Retry-After": retry}) from None
    except QueueFullError as exc:
        raise ProblemError(429, str(exc), headers={"Retry-After": "30"}) from None
    except IdempotencyConflictError as exc:
        raise ProblemError(422, str(exc)) from None
    except IdempotencyInProgressError as exc:
        raise ProblemError(409, str(exc), headers={"Retry-After": "1"}) from None
    if created:
        try:
            svc.dispatcher.submit(job.id, request)
        except Exception:
            error = {"title": "Service Unavailable", "status": 503, "detail": "the job could not be queued"}
            svc.jobs.transition(job.id, JobState.FAILED, error=error)
            raise
    return job, created
