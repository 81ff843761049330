"""The dataset card of a build: ``dataset.json`` (machines), ``README.md`` (people), ``SHA256SUMS`` and
``biomarkers.png`` (synthetic vs real distributions per group).

Nothing time-dependent is written: the same spec, data and models give the same card.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cardiosynth import __version__
from cardiosynth.data.labels import ACDC_GROUP_ORDER
from cardiosynth.export.spec import DatasetSpec, spec_dict
from cardiosynth.synthesis import sources

CARD_FORMAT = "cardiosynth-dataset"
CARD_VERSION = 1
# (key in Biomarkers.to_dict(), label): the figures a segmentation user checks a training set by.
BIOMARKERS: tuple[tuple[str, str], ...] = (
    ("lv_edv", "LVEDV (ml)"),
    ("lv_ef", "LVEF (%)"),
    ("rv_edv", "RVEDV (ml)"),
    ("rv_ef", "RVEF (%)"),
    ("myo_mass", "LV mass (g)"),
    ("max_wall_thickness", "max wall thickness (mm)"),
)
_UNLISTED = ("dataset.json", "README.md", "SHA256SUMS")  # the card cannot hold its own checksum


@dataclass(frozen=True)
class SyntheticRecord:
    """What the card keeps of one synthetic subject (``files``: (severity, phase) -> image, label)."""

    name: str
    group_index: int
    pathology: str
    base_subject: str
    seed: int
    severities: tuple[float, ...]
    folder: str
    files: dict[tuple[float, str], tuple[str, str]]
    biomarkers: dict[float, dict[str, Any] | None]
    diagnosis: dict[float, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class RealRecord:
    """A real training subject of the data folder: group, biomarkers, and whether the build copied it."""

    subject_id: str
    group: str | None
    included: bool
    frames: dict[str, tuple[str, str]]  # phase -> (image, label) file names in the subject folder
    biomarkers: dict[str, Any] | None

    @classmethod
    def of(cls, ref: sources.SubjectRef, *, included: bool) -> RealRecord:
        from cardiosynth.data.acdc import frame_paths, read_subject
        from cardiosynth.data.biomarkers import subject_biomarkers

        subject = read_subject(ref.path)
        frames = {
            phase: tuple(p.name for p in frame_paths(ref.path, frame))
            for phase, frame in (("ED", subject.info.ed), ("ES", subject.info.es))
        }
        return cls(
            subject_id=ref.subject_id,
            group=ref.group.value if ref.group is not None else None,
            included=included,
            frames=frames,  # type: ignore[arg-type]
            biomarkers=subject_biomarkers(subject).to_dict(),
        )


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {
        "n": int(a.size),
        "mean": round(float(a.mean()), 3),
        "std": round(float(a.std()), 3),
        "min": round(float(a.min()), 3),
        "max": round(float(a.max()), 3),
    }


def biomarker_values(
    records: list[SyntheticRecord], real: list[RealRecord]
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """group -> "synthetic"/"real" -> biomarker -> values (every synthetic subject at every severity)."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {}

    def add(group: str, source: str, biomarkers: dict[str, Any] | None) -> None:
        if biomarkers is None:
            return
        by_key = out.setdefault(group, {"synthetic": {}, "real": {}})[source]
        for key, _ in BIOMARKERS:
            value = _finite(biomarkers.get(key))
            if value is not None:
                by_key.setdefault(key, []).append(value)

    for r in records:
        for b in r.biomarkers.values():
            add(r.pathology, "synthetic", b)
    for x in real:
        add(x.group or "unknown", "real", x.biomarkers)
    return out


def _ordered_groups(groups: set[str]) -> list[str]:
    order = [g.value for g in ACDC_GROUP_ORDER]
    return [g for g in order if g in groups] + sorted(groups - set(order))


def biomarker_summary(records: list[SyntheticRecord], real: list[RealRecord]) -> dict[str, Any]:
    """Per group: synthetic and real statistics of each biomarker, and how often the ACDC rules give
    the synthetic subjects their target group."""
    values = biomarker_values(records, real)
    out: dict[str, Any] = {}
    for group in _ordered_groups(set(values)):
        entry: dict[str, Any] = {
            source: {key: _stats(values[group][source].get(key, [])) for key, _ in BIOMARKERS}
            for source in ("synthetic", "real")
        }
        verdicts = [d for r in records if r.pathology == group for d in r.diagnosis.values()]
        judged = [d for d in verdicts if d is not None]
        entry["rules_agree"] = round(sum(d == group for d in judged) / len(judged), 3) if judged else None
        out[group] = entry
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksums(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``root`` (symlinked real subjects followed), by POSIX relative path."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            rel = (Path(folder) / name).relative_to(root).as_posix()
            if rel not in skip:
                out[rel] = sha256_file(Path(folder) / name)
    return dict(sorted(out.items()))


def plot_biomarkers(values: dict[str, dict[str, dict[str, list[float]]]], path: Path) -> None:
    """Box plots per biomarker: for each group, the real subjects (grey) beside the synthetic (blue)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    groups = _ordered_groups(set(values))
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), squeeze=False)
    for ax, (key, title) in zip(axes.flat, BIOMARKERS, strict=True):
        for i, group in enumerate(groups):
            for offset, source, colour in ((-0.18, "real", "0.6"), (0.18, "synthetic", "tab:blue")):
                data = values[group][source].get(key, [])
                if not data:
                    continue
                ax.boxplot(
                    [data],
                    positions=[i + offset],
                    widths=0.3,
                    patch_artist=True,
                    showfliers=False,
                    boxprops={"facecolor": colour, "alpha": 0.5},
                    medianprops={"color": "k"},
                )
                jitter = np.linspace(-0.08, 0.08, len(data)) if len(data) > 1 else np.zeros(1)
                ax.scatter(i + offset + jitter, data, s=6, color=colour, zorder=3)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles = [Rectangle((0, 0), 1, 1, color=c, alpha=0.5) for c in ("0.6", "tab:blue")]
    fig.legend(handles, ["real", "synthetic"], loc="upper right")
    fig.suptitle("Biomarkers per group: real training subjects vs synthetic subjects (every severity)")
    fig.tight_layout(rect=(0, 0, 0.93, 0.96))
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def build_card(
    root: Path,
    spec: DatasetSpec,
    records: list[SyntheticRecord],
    real: list[RealRecord],
    *,
    models: dict[str, str],
    data_root: Path,
    data_fingerprint: str,
) -> dict[str, Any]:
    """The ``dataset.json`` record of the dataset being built in ``root`` (its files already there)."""
    from cardiosynth.export.build import REAL_DIR, SYNTHETIC_DIR

    groups: dict[str, int] = {}
    for x in real:
        groups[x.group or "unknown"] = groups.get(x.group or "unknown", 0) + 1
    requested = [
        {
            "pathology": g.pathology.value,
            "n": g.n,
            "severity": list(g.severities)
            if g.severities is not None
            else (list(g.severity) if isinstance(g.severity, tuple) else g.severity),
        }
        for g in spec.pathologies
    ]
    made = [
        {"pathology": g.pathology.value, "n": sum(r.group_index == i for r in records)}
        for i, g in enumerate(spec.pathologies)
    ]
    return {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "name": spec.name,
        "description": spec.description,
        "cardiosynth_version": __version__,
        "spec": spec_dict(spec),
        "models": models,
        "data": {
            "root": str(Path(data_root).resolve()),
            "fingerprint": data_fingerprint,
            "training_subjects": len(real),
            "groups": groups,
        },
        "requested": requested,
        "made": {"synthetic": len(records), "real_included": sum(x.included for x in real), "groups": made},
        "subjects": [
            {
                "name": r.name,
                "pathology": r.pathology,
                "group_index": r.group_index,
                "base_subject": r.base_subject,
                "seed": r.seed,
                "severities": list(r.severities),
                "folder": f"{SYNTHETIC_DIR}/{r.folder}",
                "files": [
                    {"severity": s, "phase": ph, "image": img, "label": lab}
                    for (s, ph), (img, lab) in r.files.items()
                ],
                "diagnosis": {f"{s:.2f}": d for s, d in r.diagnosis.items()},
            }
            for r in records
        ],
        "real": [
            {
                "subject": x.subject_id,
                "group": x.group,
                "included": x.included,
                "folder": f"{REAL_DIR}/{x.subject_id}" if x.included else None,
                "files": [
                    {
                        "phase": ph,
                        "image": f"{REAL_DIR}/{x.subject_id}/{img}",
                        "label": f"{REAL_DIR}/{x.subject_id}/{lab}",
                    }
                    for ph, (img, lab) in x.frames.items()
                ]
                if x.included
                else [],
            }
            for x in real
        ],
        "biomarkers": biomarker_summary(records, real),
        "files": checksums(root, skip=_UNLISTED),
    }


def _fmt(stats: dict[str, Any]) -> str:
    if not stats.get("n"):
        return "-"
    return f"{stats['mean']:.1f} ± {stats['std']:.1f} ({stats['n']})"


def card_markdown(card: dict[str, Any]) -> str:
    """The README of a built dataset: what was asked, what was made, biomarkers, models, checksums."""
    lines = [f"# {card['name']}", ""]
    if card["description"]:
        lines += [card["description"], ""]
    made = card["made"]
    lines += [
        f"Synthetic cardiac MR subjects made by cardiosynth {card['cardiosynth_version']}: "
        f"{made['synthetic']} synthetic subjects"
        + (f" and {made['real_included']} real training subjects" if made["real_included"] else "")
        + ". Labels in the ACDC convention (0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity).",
        "",
        "## What was asked and what was made",
        "",
        "| # | pathology | severity | asked | made |",
        "|---|---|---|---|---|",
    ]
    for i, (asked, got) in enumerate(zip(card["requested"], made["groups"], strict=True)):
        lines.append(f"| {i} | {asked['pathology']} | {asked['severity']} | {asked['n']} | {got['n']} |")
    spec = card["spec"]
    lines += [
        "",
        f"Seed {spec['seed']}; models: " + ", ".join(f"{k} `{v}`" for k, v in card["models"].items()) + ".",
        f"Real data: `{card['data']['root']}` ({card['data']['training_subjects']} training subjects, "
        f"fingerprint `{card['data']['fingerprint'][:16]}`).",
        "",
        "## Biomarkers per group (mean ± std (n); synthetic at every severity)",
        "",
        "| group | source | " + " | ".join(title for _, title in BIOMARKERS) + " | rules agree |",
        "|---|---|" + "---|" * len(BIOMARKERS) + "---|",
    ]
    for group, entry in card["biomarkers"].items():
        for source in ("synthetic", "real"):
            if not any(s.get("n") for s in entry[source].values()):
                continue
            agree = entry["rules_agree"] if source == "synthetic" and entry["rules_agree"] is not None else ""
            cells = " | ".join(_fmt(entry[source][key]) for key, _ in BIOMARKERS)
            lines.append(f"| {group} | {source} | {cells} | {agree} |")
    lines += [
        "",
        "![biomarkers](biomarkers.png)",
        "",
        "## Layout",
        "",
        "- `synthetic/<PATHOLOGY>_<NNN>/`: `<name>_s<severity>_<ED|ES>.nii.gz` (image) and `..._gt.nii.gz`"
        " (labels) on the base subject's native grid, `provenance.json` (request, base subject, models,"
        " biomarkers, rule diagnosis).",
        "- `real/patientNNN/`: the real training subjects in the ACDC layout (when included).",
        "- `dataset.json`: this card for machines; `spec.yaml`: the spec as given.",
        "",
        "Export for training: `cardiosynth dataset export --from DIR --format nnunet --out ROOT --id 501"
        " --name CardioSynth` or `--format monai --out ROOT`.",
        "",
        "## Checksums",
        "",
        f"`sha256sum -c SHA256SUMS` checks all {len(card['files']) + 2} files; `dataset.json` lists the"
        " sha256 of every file but itself, this README and SHA256SUMS.",
        "",
    ]
    return "\n".join(lines)


def write_card(
    root: Path,
    spec: DatasetSpec,
    records: list[SyntheticRecord],
    real: list[RealRecord],
    *,
    models: dict[str, str],
    data_root: Path,
    data_fingerprint: str,
) -> dict[str, Any]:
    """Write ``biomarkers.png``, ``dataset.json``, ``README.md`` and ``SHA256SUMS`` into ``root``."""
    plot_biomarkers(biomarker_values(records, real), root / "biomarkers.png")
    card = build_card(
        root, spec, records, real, models=models, data_root=data_root, data_fingerprint=data_fingerprint
    )
    (root / "dataset.json").write_text(json.dumps(card, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    (root / "README.md").write_text(card_markdown(card), encoding="utf-8")
    sums = checksums(root, skip=("SHA256SUMS",))
    (root / "SHA256SUMS").write_text("".join(f"{h}  {p}\n" for p, h in sums.items()), encoding="utf-8")
    return card
