"""The dataset spec: what a ``cardiosynth dataset build`` makes, validated before any work starts.

A spec is YAML (or JSON)::

    name: hcm-dcm-mix
    seed: 0
    models: {vae: phantom-v2c, spade: phantom-v2c}
    include_real: true            # copy the real training subjects into the dataset
    correlation: both             # any SynthesisRequest field, for every group ...
    pathologies:
      - pathology: HCM
        n: 20
        severity: [0.5, 1.0]      # a range: one severity drawn per subject (seeded)
      - pathology: DCM
        n: 10
        severity: 1.0             # one severity
        correlation: latent       # ... or per group
      - pathology: RV
        n: 5
        severities: [0.5, 1.0]    # every subject at each severity (a trajectory)

The engine options a spec may set (``correlation``, ``phases``, ``ns``, ...) are read from the fields
of :class:`~cardiosynth.synthesis.engine.SynthesisRequest` itself, so a field added to the engine is
accepted here without a change; the engine's own checks run on every group at load time.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticSchemaGenerationError,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from cardiosynth.data.labels import Group
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.synthesis.engine import MAX_SUBJECTS, SynthesisRequest

# Request fields the spec sets through its own keys (pathology and n per group, the severities from
# ``severity``/``severities``, the seed derived per group); every other field is an engine option.
_OWN_FIELDS = frozenset({"pathology", "n", "severities", "seed"})
MAX_GROUP_SUBJECTS = 10 * MAX_SUBJECTS  # a group larger than one request is made in chunks
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@cache
def request_options() -> dict[str, tuple[Any, Any]]:
    """Engine options a spec may set: request field name -> (type, default), from the dataclass."""
    hints = typing.get_type_hints(SynthesisRequest)
    options: dict[str, tuple[Any, Any]] = {}
    for f in dataclasses.fields(SynthesisRequest):
        if f.name in _OWN_FIELDS or not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:  # a new required request field: the spec cannot supply it silently
            raise TypeError(f"SynthesisRequest.{f.name} has no default; the dataset spec needs a rule for it")
        options[f.name] = (hints[f.name], default)
    return options


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _validatable(annotation: Any) -> Any:
    """``annotation`` when pydantic can validate it, else ``Any`` (the engine's own checks still run)."""
    try:
        TypeAdapter(annotation)
    except PydanticSchemaGenerationError:
        return Any
    return annotation


def _options_model(name: str) -> type[BaseModel]:
    """A pydantic model holding the engine options (each optional, default from the dataclass)."""
    fields: dict[str, Any] = {k: (_validatable(t), d) for k, (t, d) in request_options().items()}
    return create_model(name, __base__=_Strict, **fields)


_Options = _options_model("EngineOptions")


class GroupSpec(_Options):  # type: ignore[misc,valid-type]
    """One pathology of the dataset: how many subjects, at which severities, with which options."""

    pathology: Group
    n: int = Field(ge=1, le=MAX_GROUP_SUBJECTS)
    severity: float | tuple[float, float] = 1.0
    severities: tuple[float, ...] | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**32)

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

    @model_validator(mode="after")
    def _one_severity_key(self) -> GroupSpec:
        if self.severities is not None and "severity" in self.model_fields_set:
            raise ValueError("give either severity (one value or a range) or severities (a list), not both")
        return self

    @property
    def is_range(self) -> bool:
        return (
            self.severities is None
            and isinstance(self.severity, tuple)
            and self.severity[0] < self.severity[1]
        )


class ModelSpec(_Strict):
    vae: str = DEFAULT_VERSION
    spade: str = DEFAULT_VERSION


class DatasetSpec(_Options):  # type: ignore[misc,valid-type]
    """A whole dataset: name, seed, models, real subjects, engine options and the pathology groups."""

    name: str = "cardiosynth-dataset"
    description: str = ""
    seed: int = Field(default=0, ge=0, lt=2**32)
    models: ModelSpec = ModelSpec()
    include_real: bool = False
    real_mode: Literal["copy", "symlink"] = "copy"
    preview: bool = False
    pathologies: tuple[GroupSpec, ...] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"name must be letters, digits, '_', '-', '.', got {value!r}")
        return value

    @model_validator(mode="after")
    def _engine_accepts_every_group(self) -> DatasetSpec:
        # The engine's own checks (phases, ns, modes, ...) now, not after an hour of synthesis.
        for index in range(len(self.pathologies)):
            try:
                for request in self.requests(index):
                    del request
            except ValueError as exc:
                raise ValueError(f"pathologies.{index}: {exc}") from None
        return self

    def options(self, index: int) -> dict[str, Any]:
        """The engine options of group ``index``: the group's own, else the spec's, else the default."""
        group = self.pathologies[index]
        out = {}
        for name in request_options():
            source = group if name in group.model_fields_set else self
            out[name] = getattr(source, name)
        return out

    def group_seed(self, index: int) -> int:
        """The seed of group ``index``: its own, else derived from the spec seed and the index."""
        own = self.pathologies[index].seed
        if own is not None:
            return own
        return int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])

    def subject_severities(self, index: int) -> list[tuple[float, ...]]:
        """The severities of each subject of group ``index`` (a range is drawn per subject, seeded)."""
        group = self.pathologies[index]
        if group.severities is not None:
            return [tuple(group.severities)] * group.n
        if not group.is_range:
            value = group.severity if isinstance(group.severity, float | int) else group.severity[0]
            return [(float(value),)] * group.n
        low, high = group.severity  # type: ignore[misc]
        rng = np.random.default_rng([self.seed, index, 0x5E7])
        # Two decimals: file names carry the severity as s0.00, and names should not round.
        drawn = np.clip(np.round(rng.uniform(low, high, group.n), 2), max(low, 0.01), high)
        return [(float(s),) for s in drawn]

    def bases(self, index: int, nor: Sequence[str]) -> list[str] | None:
        """The base subject of each subject of group ``index`` across all its requests: the pinned
        ``base_subjects`` in turn, else the engine's draw (every NOR subject once before any repeats,
        seeded by the group seed) over ``nor``; ``None`` without either."""
        group = self.pathologies[index]
        pinned = tuple(self.options(index).get("base_subjects", ()))
        if pinned:
            return [pinned[i % len(pinned)] for i in range(group.n)]
        if not nor:
            return None
        rng = np.random.default_rng([self.group_seed(index), 0xBA5E])  # as engine.choose_bases
        order: list[str] = []
        while len(order) < group.n:
            order.extend(nor[i] for i in rng.permutation(len(nor)))
        return order[: group.n]

    def requests(self, index: int, nor: Sequence[str] = ()) -> list[SynthesisRequest]:
        """Engine requests for group ``index``: one per chunk of at most ``MAX_SUBJECTS`` subjects for
        fixed severities, one per subject for a severity range. ``nor``, the data's NOR subject ids in
        the engine's order, spreads the bases over the whole group when it takes several requests
        (one request alone draws them itself, exactly as ``cardiosynth synthesize`` would)."""
        group = self.pathologies[index]
        seed = self.group_seed(index)
        options = self.options(index)
        severities = self.subject_severities(index)
        several = group.is_range or group.n > MAX_SUBJECTS
        bases = self.bases(index, nor) if several else None

        def pinned(start: int, n: int) -> dict[str, Any]:
            return {**options, "base_subjects": tuple(bases[start : start + n])} if bases else options

        if group.is_range:
            return [
                SynthesisRequest(
                    pathology=group.pathology, n=1, severities=s, seed=_sub_seed(seed, i), **pinned(i, 1)
                )
                for i, s in enumerate(severities)
            ]
        out = []
        for start in range(0, group.n, MAX_SUBJECTS):
            n = min(MAX_SUBJECTS, group.n - start)
            chunk_seed = seed if start == 0 else _sub_seed(seed, start)
            out.append(
                SynthesisRequest(
                    pathology=group.pathology,
                    n=n,
                    severities=severities[0],
                    seed=chunk_seed,
                    **pinned(start, n),
                )
            )
        return out

    @property
    def total_subjects(self) -> int:
        return sum(g.n for g in self.pathologies)


def _sub_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index, 0x5B]).generate_state(1)[0])


def _format_errors(error: ValidationError) -> str:
    errors = error.errors()
    failed_items = {e["loc"][:1] for e in errors if len(e["loc"]) > 1}
    lines = []
    for e in errors:
        if e["type"] == "too_short" and e["loc"][:1] in failed_items:
            continue  # pydantic also reports the list as short when one of its items failed
        where = ".".join(str(p) for p in e["loc"]) or "spec"
        if e["type"] == "missing":
            lines.append(f"  {where}: required field missing")
            continue
        message = (
            "unknown field" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        )
        shown = e.get("input")
        got = f" (got {shown!r})" if e["loc"] and isinstance(shown, str | int | float | list) else ""
        lines.append(f"  {where}: {message}{got}")
    return "\n".join(lines)


def parse_spec(data: Mapping[str, Any], *, source: str = "spec") -> DatasetSpec:
    """Validate a spec mapping; ``ValueError`` naming every field at fault."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    try:
        spec: DatasetSpec = DatasetSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise ValueError(f"{source}: invalid dataset spec\n{_format_errors(exc)}") from None
    return spec


def load_spec(path: Path) -> DatasetSpec:
    """Read and validate a YAML (or JSON) spec file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: spec file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    return parse_spec(data if data is not None else {}, source=str(path))


def spec_dict(spec: DatasetSpec) -> dict[str, Any]:
    """The spec with every default filled in and each group's effective engine options, JSON-ready
    (the dataset card records it)."""
    dumped = spec.model_dump(mode="json")
    options = set(request_options())
    out = {k: v for k, v in dumped.items() if k not in options and k != "pathologies"}
    out.update({k: dumped[k] for k in request_options()})
    groups = []
    for index, group in enumerate(dumped["pathologies"]):
        entry = {k: v for k, v in group.items() if k not in options}
        entry["seed"] = spec.group_seed(index)
        for name, value in spec.options(index).items():
            entry[name] = list(value) if isinstance(value, tuple) else value
        groups.append(entry)
    out["pathologies"] = groups
    return out
