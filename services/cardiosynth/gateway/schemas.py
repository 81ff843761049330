"""Request and response bodies of the API (with the examples the OpenAPI spec shows)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.synthesis.modes import (
    CORRELATION_HELP,
    DEFAULT_CORRELATION,
    DEFAULT_INTERPOLATION,
    CorrelationMode,
    Interpolation,
)

Pathology = Literal["NOR", "DCM", "HCM", "RV", "MINF"]
# The sampler's choices come from one place (cardiosynth.synthesis.modes, no numerics imported).
Correlation = CorrelationMode
Phase = Literal["ED", "ES"]
# Coronary territories of cardiosynth.data.territory (spelled out: the gateway imports no numerics).
Territory = Literal["LAD", "LCx", "RCA"]
State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
# A subject folder name (ACDC: patientNNN); bounded so that a request cannot carry megabytes of text
# into the job record and every error or listing that echoes it.
SubjectId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
# The largest job: n subjects x its severities. Equal to the default per-key quota on subjects in
# flight, so the largest request the schema accepts is one the quota accepts too. A job runs in chunks
# of subjects (cardiosynth.workers.graph), so a worker's memory is bounded by the chunk, not by n.
MAX_SUBJECT_SEVERITIES = 5000
# The largest n (= cardiosynth.synthesis.engine.MAX_JOB_SUBJECTS; the gateway imports no numerics).
MAX_N = 5000


class SynthesizeRequest(BaseModel):
    """``POST /synthesize``: what to make."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"pathology": "HCM", "n": 5}, {"pathology": "DCM", "n": 2, "trajectory": 5}]
        },
    )

    pathology: Pathology = Field(description="target pathology")
    n: int = Field(
        ge=1,
        le=MAX_N,
        description=f"number of synthetic subjects (n x trajectory <= {MAX_SUBJECT_SEVERITIES})",
    )
    seed: int = Field(default=0, ge=0, lt=2**32)
    severity: float | None = Field(default=None, gt=0.0, le=1.0, description="one severity in (0, 1]")
    trajectory: int | None = Field(default=None, ge=1, le=20, description="severities 1/K, 2/K, ..., 1")
    correlation: Correlation = Field(default=DEFAULT_CORRELATION, description=CORRELATION_HELP)
    interpolation: Interpolation = Field(
        default=DEFAULT_INTERPOLATION,
        description="sample: towards a sample of the class (the paper's); shift: the base NOR subject moved "
        "by the class shift, keeping its identity",
    )
    phases: list[Phase] = Field(default=["ED", "ES"], min_length=1, max_length=2)
    territory: Territory | None = Field(
        default=None,
        description="MINF only: infarct territory; default: drawn per subject with the data's territory "
        "frequencies",
    )
    base_subjects: list[SubjectId] = Field(default_factory=list, max_length=100)
    model: str = Field(default=DEFAULT_VERSION, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    # Off by default: the base volumes are real data, and a results folder read with a *.nii.gz glob
    # would mix them into the synthetic set; the web page asks for them (its side-by-side viewer).
    include_base: bool = Field(
        default=False,
        description="also store each subject's base NOR subject, its own image and labels per phase "
        "(kinds base_image and base_label; the size of one severity's files), to view them side by side",
    )

    archive: bool = Field(
        default=False,
        description="also build one tar of the job's files and manifest once it succeeds "
        "(as POST /jobs/{id}/archive; download it from GET /jobs/{id}/archive)",
    )

    @model_validator(mode="after")
    def _one_of_severity_or_trajectory(self) -> SynthesizeRequest:
        if self.severity is not None and self.trajectory is not None:
            raise ValueError("give severity or trajectory, not both")
        if len(set(self.phases)) != len(self.phases):
            raise ValueError("phases must not repeat")
        if self.territory is not None and self.pathology != "MINF":
            raise ValueError(f"territory applies to MINF only, not to {self.pathology}")
        steps = self.trajectory or 1
        if self.n * steps > MAX_SUBJECT_SEVERITIES:
            raise ValueError(
                f"n x trajectory = {self.n} x {steps} = {self.n * steps} subjects x severities, above the "
                f"limit of {MAX_SUBJECT_SEVERITIES} per job: split it into smaller jobs"
            )
        return self


class StageProgress(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"done": 3, "total": 5}]})

    done: int
    total: int


JOB_EXAMPLE: dict[str, Any] = {
    "id": "3f2a9c0d5e6b4a718293a4b5c6d7e8f9",
    "state": "running",
    "queue_position": None,
    "request": {"pathology": "HCM", "n": 5},
    "progress": {"stats": {"done": 1, "total": 1}},
    "timings": {},
    "created": 1764060000.0,
    "updated": 1764060004.0,
    "error": None,
    "links": {"self": "/jobs/3f2a9c0d5e6b4a718293a4b5c6d7e8f9"},
}


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Unprocessable Content",
                    "status": 422,
                    "detail": "n: Input should be less than or equal to 100",
                }
            ]
        }
    )

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


ArchiveState = Literal["pending", "building", "ready", "failed"]


class ArchiveOut(BaseModel):
    """A succeeded job's tar archive (``POST``/``GET /jobs/{id}/archive``): its files under
    ``<job id>/<subject>/`` and ``<job id>/manifest.json``, uncompressed (the NIfTI files are gzip)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"state": "pending", "updated": 1764060040.0, "download": None},
                {"state": "ready", "bytes": 1239040, "sha256": "5d1e" + "0" * 60, "files": 26,
                 "updated": 1764060042.5, "download": "/jobs/3f2a9c0d5e6b4a718293a4b5c6d7e8f9/archive"},
            ]
        }
    )  # fmt: skip

    state: ArchiveState = Field(
        description="pending (queued), building (a worker writes it), ready (download it), failed (see "
        "error; POST again to retry)"
    )
    bytes: int | None = Field(default=None, description="size of the tar (while building: written so far)")
    sha256: str | None = Field(default=None, description="SHA-256 of the whole tar, once ready")
    files: int | None = Field(default=None, description="members of the tar, manifest.json included")
    done: int | None = Field(default=None, description="while building: members written")
    total: int | None = Field(default=None, description="while building: members to write")
    error: str | None = None
    updated: float | None = Field(default=None, description="when this state was recorded")
    download: str | None = Field(default=None, description="where to GET it (a redirect to a signed URL)")


class JobOut(BaseModel):
    """``GET /jobs/{id}``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2a9c0d5e6b4a718293a4b5c6d7e8f9",
                    "state": "queued",
                    "queue_position": 0,
                    "request": {"pathology": "HCM", "n": 5},
                    "progress": {},
                    "timings": {},
                    "created": 1764060000.0,
                    "updated": 1764060000.0,
                    "error": None,
                    "links": {"self": "/jobs/3f2a9c0d5e6b4a718293a4b5c6d7e8f9"},
                }
            ]
        }
    )

    id: str
    kind: Literal["synthesize", "dataset"] = Field(
        default="synthesize", description="POST /synthesize or POST /datasets"
    )
    state: State
    queue_position: int | None = None
    request: dict[str, Any]
    progress: dict[str, Any]
    timings: dict[str, float]
    created: float
    updated: float
    error: Problem | None = None
    expired: bool = Field(default=False, description="its results were deleted by output retention")
    expired_at: float | None = None
    stored_bytes: int = Field(
        default=0,
        description="bytes of its stored files; counted against the key's quota on stored bytes until it "
        "expires or is purged",
    )
    links: dict[str, str]
    archive: ArchiveOut | None = Field(
        default=None, description="its tar archive, once asked for (POST /jobs/{id}/archive)"
    )


class JobList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [JOB_EXAMPLE], "total": 1, "offset": 0, "limit": 20}]}
    )

    items: list[JobOut]
    total: int
    offset: int
    limit: int


FILE_EXAMPLE: dict[str, Any] = {
    "subject": "HCM_000",
    "severity": "1.00",
    "phase": "ED",
    "kind": "label",
    "key": "jobs/3f2a9c0d5e6b4a718293a4b5c6d7e8f9/HCM_000/HCM_000_s1.00_ED_gt.nii.gz",
    "url": "http://localhost:8000/files/jobs/3f2a9c0d/HCM_000/HCM_000_s1.00_ED_gt.nii.gz?expires=1764063600&signature=ab12",
    "expires_in": 3600,
}


class FileOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [FILE_EXAMPLE]})

    subject: str | None = None  # None: a file of a whole dataset (its card, plot, archive)
    severity: str | None = None
    phase: str | None = None
    kind: str
    key: str
    url: str
    expires_in: int


class ResultsOut(BaseModel):
    """``GET /jobs/{id}/results``: every output file with an expiring URL, and the biomarkers."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job": "3f2a9c0d5e6b4a718293a4b5c6d7e8f9",
                    "files": [FILE_EXAMPLE],
                    "biomarkers": {
                        "HCM_000": {"1.00": {"lv_edv": 110.5, "lv_ef": 75.1, "max_wall_thickness": 26.2}}
                    },
                }
            ]
        }
    )

    job: str
    files: list[FileOut]
    biomarkers: dict[str, Any]


class WorkerDevice(BaseModel):
    """A live worker of a model's queue and where it computes (from its liveness record)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "spade@gpu-host-1", "queue": "spade", "device": "cuda:0",
                 "device_name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559, "memory_free_mib": 79012,
                 "precision": "bf16", "configured": "cuda"},
            ]
        }
    )  # fmt: skip

    name: str
    queue: str
    device: str = Field(description="cpu, cuda:N, or the configured spec where the device is not known")
    device_name: str | None = Field(default=None, description="the GPU's name, or the processor's")
    memory_total_mib: int | None = None
    memory_free_mib: int | None = Field(default=None, description="CUDA only, as of the worker's last record")
    precision: str | None = Field(default=None, description="autocast of decode and translate")
    configured: str | None = Field(default=None, description="CARDIOSYNTH_DEVICE as set")
    error: str | None = Field(default=None, description="why the configured device is not usable")


class ModelOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"kind": "vae", "version": "phantom-v2c", "card": {"preset": "cpu-small"},
                 "workers": [{"name": "vae@host", "queue": "vae", "device": "cpu", "device_name": "x86_64",
                              "memory_total_mib": 64000, "precision": "fp32", "configured": "auto"}]},
            ]
        }
    )  # fmt: skip

    kind: str
    version: str
    card: dict[str, Any]
    workers: list[WorkerDevice] = Field(
        default_factory=list, description="live workers of this kind's queue and their devices"
    )


class Health(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "checks": {"broker": "ok", "storage": "ok", "workers_vae": "ok", "workers_spade": "ok"},
                }
            ]
        }
    )

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
