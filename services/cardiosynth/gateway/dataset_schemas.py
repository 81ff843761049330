"""Bodies of the dataset endpoints: ``POST /datasets`` takes the dataset spec of ``cardiosynth dataset
build`` (:mod:`cardiosynth.export.spec`) as JSON.

The gateway imports no numerics (its image has neither numpy nor torch), and the spec module is
built on the engine's request class, so this is the spec's schema restated without numerics: the
same fields, names, types and rules (a test keeps the two field sets identical and checks that both
reject the same bad specs at the same field). The workers validate the stored spec again with
:func:`cardiosynth.export.spec.parse_spec` before any work, so the spec module stays the rule.
Limits only the API has (a bounded ``ns``, ``severities`` and group count) keep one request small.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cardiosynth.gateway.schemas import Correlation, Pathology, Phase, SubjectId
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.synthesis.modes import (
    CORRELATION_HELP,
    DEFAULT_CORRELATION,
    DEFAULT_INTERPOLATION,
    Interpolation,
)

# As cardiosynth.export.spec: MAX_GROUP_SUBJECTS (10 engine requests of 100), the engine's ns default
# (cardiosynth.synthesis.equalise.NS_DEFAULT) and its trajectory bound (MAX_TRAJECTORY).
MAX_GROUP_SUBJECTS = 1000
NS_DEFAULT = 32
MAX_SEVERITIES = 20
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
TERRITORIES = ("LAD", "LCx", "RCA")
Format = Literal["files", "zip", "nnunet", "monai"]


def _canonical_territory(value: Any) -> Any:
    """Case-insensitive as the engine (``lad`` -> ``LAD``); anything else is left for the type check."""
    if isinstance(value, str):
        for t in TERRITORIES:
            if value.strip().upper() == t.upper():
                return t
    return value


class EngineOptions(BaseModel):
    """The engine options a spec sets for every group, or a group for itself (as the spec's)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"correlation": "latent"}]})

    correlation: Correlation = Field(default=DEFAULT_CORRELATION, description=CORRELATION_HELP)
    phases: list[Phase] = Field(default=["ED", "ES"], min_length=1, max_length=2)
    base_subjects: list[SubjectId] = Field(default_factory=list, max_length=100)
    ns: int = Field(default=NS_DEFAULT, ge=2, le=128, description="slices after equalisation")
    interpolation: Interpolation = DEFAULT_INTERPOLATION
    shift_residual: float = Field(default=0.0, ge=0.0, le=1.0)
    territory: Literal["LAD", "LCx", "RCA"] | None = Field(
        default=None, description="MINF only: infarct territory; default: drawn per subject"
    )

    @field_validator("territory", mode="before")
    @classmethod
    def _territory(cls, value: Any) -> Any:
        return _canonical_territory(value)

    @field_validator("phases")
    @classmethod
    def _phases(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"phases must not repeat, got {value}")
        return value


class DatasetGroup(EngineOptions):
    """One pathology of the dataset: how many subjects, at which severities, with which options."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"pathology": "HCM", "n": 20, "severity": [0.5, 1.0]},
                {"pathology": "DCM", "n": 10, "severities": [0.5, 1.0], "correlation": "latent"},
            ]
        },
    )

    pathology: Pathology = Field(description="target pathology")
    n: int = Field(ge=1, le=MAX_GROUP_SUBJECTS, description="synthetic subjects of this group")
    severity: float | tuple[float, float] = Field(
        default=1.0, description="one severity in (0, 1], or a range [low, high] drawn per subject"
    )
    severities: list[float] | None = Field(
        default=None, min_length=1, max_length=MAX_SEVERITIES, description="every subject at each severity"
    )
    seed: int | None = Field(default=None, ge=0, lt=2**32, description="default: from the spec seed")

    @field_validator("pathology", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("severity")
    @classmethod
    def _severity(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        low, high = (value, value) if isinstance(value, float | int) else value
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(
                f"severity must be in (0, 1], or a range [low, high] with 0 < low <= high <= 1; got {value}"
            )
        return value

    @field_validator("severities")
    @classmethod
    def _severities(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(not 0.0 < s <= 1.0 for s in value):
            raise ValueError(f"severities must be in (0, 1], got {value}")
        return value

    @model_validator(mode="after")
    def _one_severity_key(self) -> DatasetGroup:
        if self.severities is not None and "severity" in self.model_fields_set:
            raise ValueError("give either severity (one value or a range) or severities (a list), not both")
        return self

    def severity_count(self) -> int:
        """Severities each subject of the group is made at (a range draws one per subject)."""
        return len(self.severities) if self.severities is not None else 1


class DatasetModels(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"vae": "phantom-v2c", "spade": "phantom-v2c"}]}
    )

    vae: str = Field(default=DEFAULT_VERSION, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    spade: str = Field(default=DEFAULT_VERSION, pattern=r"^[A-Za-z0-9._-]{1,64}$")


DATASET_EXAMPLE: dict[str, Any] = {
    "name": "hcm-dcm-mix",
    "seed": 0,
    "include_real": True,
    "pathologies": [
        {"pathology": "HCM", "n": 4, "severity": [0.5, 1.0]},
        {"pathology": "DCM", "n": 2, "severities": [0.5, 1.0], "correlation": "latent"},
    ],
    "format": "zip",
}


class DatasetRequest(EngineOptions):
    """``POST /datasets``: the dataset spec of ``cardiosynth dataset build``, as JSON, plus ``format``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [DATASET_EXAMPLE]})

    name: str = Field(default="cardiosynth-dataset", max_length=64, pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=2000)
    seed: int = Field(default=0, ge=0, lt=2**32)
    models: DatasetModels = DatasetModels()
    include_real: bool = Field(default=False, description="also the real training subjects")
    real_mode: Literal["copy", "symlink"] = "copy"
    preview: bool = Field(default=False, description="a preview PNG per synthetic subject")
    pathologies: list[DatasetGroup] = Field(min_length=1, max_length=20)
    format: Format = Field(
        default="files",
        description="files: every file with a link; zip: also the whole folder as one zip; monai: also a "
        "datalist.json (relative paths) and the zip; nnunet: also an nnU-Net v2 raw dataset (id 501) as zip",
    )

    def spec(self) -> dict[str, Any]:
        """The spec as the client gave it (unset fields left out: a group inherits the spec's options
        only where it does not set its own), JSON-ready; what the worker builds from."""
        return self.model_dump(mode="json", exclude_unset=True, exclude={"format"})

    def weight(self) -> int:
        """Subjects x severities the build synthesizes (the per-key quota on subjects in flight)."""
        return sum(g.n * g.severity_count() for g in self.pathologies)

    def territory_errors(self) -> list[dict[str, str]]:
        """A territory that would reach a group that is not MINF (the engine refuses those)."""
        errors = []
        for i, g in enumerate(self.pathologies):
            own = "territory" in g.model_fields_set
            territory = g.territory if own else self.territory
            if territory is not None and g.pathology != "MINF":
                errors.append(
                    {
                        "field": f"pathologies.{i}.territory" if own else "territory",
                        "message": f"territory {territory!r} applies to MINF only, not to {g.pathology} "
                        f"(pathologies.{i})",
                    }
                )
        return errors


class DatasetFileOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "path": "synthetic/HCM_000/HCM_000_s0.74_ED_gt.nii.gz",
                    "source": "synthetic",
                    "subject": "HCM_000",
                    "severity": "0.74",
                    "phase": "ED",
                    "kind": "label",
                    "sha256": "9f2c" + "0" * 60,
                    "bytes": 20480,
                    "key": "jobs/3f2a9c0d/dataset/synthetic/HCM_000/HCM_000_s0.74_ED_gt.nii.gz",
                    "url": "http://localhost:8000/files/jobs/3f2a9c0d/dataset/synthetic/HCM_000/"
                    "HCM_000_s0.74_ED_gt.nii.gz?expires=1764063600&signature=ab12",
                    "expires_in": 3600,
                }
            ]
        }
    )

    path: str = Field(description="path inside the dataset folder (or the archive's name)")
    source: Literal["synthetic", "real"] | None = None
    subject: str | None = None
    severity: str | None = None
    phase: str | None = None
    kind: str = Field(description="image, label, provenance, preview, card, card-readme, checksums, ...")
    sha256: str
    bytes: int
    key: str
    url: str
    expires_in: int


class DatasetResultsOut(BaseModel):
    """``GET /datasets/{id}/results``: every file with an expiring URL, the card's summary, and links
    to the card, its README, the checksums, the biomarker plot and the archive of ``format``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job": "3f2a9c0d5e6b4a718293a4b5c6d7e8f9",
                    "name": "hcm-dcm-mix",
                    "format": "zip",
                    "files": [DatasetFileOut.model_config["json_schema_extra"]["examples"][0]],  # type: ignore[index]
                    "links": {
                        "card": "http://localhost:8000/files/jobs/3f2a9c0d/dataset/dataset.json?expires=1&signature=ab",
                        "plot": "http://localhost:8000/files/jobs/3f2a9c0d/dataset/biomarkers.png?expires=1&signature=cd",
                    },
                    "requested": [{"pathology": "HCM", "n": 4, "severity": [0.5, 1.0]}],
                    "made": {"synthetic": 4, "real_included": 0, "groups": [{"pathology": "HCM", "n": 4}]},
                    "models": {"vae": "phantom-v2c", "spade": "phantom-v2c"},
                    "biomarkers": {
                        "HCM": {"synthetic": {"lv_ef": {"n": 4, "mean": 71.2}}, "rules_agree": 1.0}
                    },
                }
            ]
        }
    )

    job: str
    name: str
    format: Format
    files: list[DatasetFileOut]
    links: dict[str, str]
    requested: list[dict[str, Any]]
    made: dict[str, Any]
    models: dict[str, str]
    biomarkers: dict[str, Any]
