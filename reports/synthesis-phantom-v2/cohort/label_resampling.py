"""How the label resampling moves the maximal wall thickness, with and without a model.

Part 1 (no model): for every real subject per class (ED), the biomarker's maximal wall thickness of
the native labels, of the processed crop (1.5 mm) made by nearest neighbour and by linear shares
(:mod:`cardiosynth.data.preprocess`), and of each crop put back on the native grid the same way.
Part 2 (per VAE version given): the processed labels (resampled as that VAE's training labels were)
and their VAE round trip (own latents, the decoder calibration), on the processed grid and restored
to the native one; the round trip's excess over the real heart is what the decoder and the grid
change add, the part a sampler cannot remove.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/label_resampling.py DATA [VERSION[@ROOT] ...]
"""

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
from wall_profile import GROUPS, crop_round_trips

from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.preprocess import TARGET_SPACING_MM, apply_labels, restore_labels
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources


def wall(labels: npt.NDArray[np.uint8], spacing: tuple[float, float, float]) -> float:
    """The biomarker's maximal ED wall thickness (mm) of ``(X, Y, Z)`` labels."""
    return compute_biomarkers(labels, labels, spacing).max_wall_thickness


def crop_wall(stack: npt.NDArray[np.uint8], slice_spacing: float) -> float:
    """The same on a processed ``(Z, S, S)`` stack (1.5 mm pixels)."""
    return wall(np.moveaxis(stack, 0, 2), (TARGET_SPACING_MM, TARGET_SPACING_MM, slice_spacing))


def line(name: str, figures: dict[str, list[float]]) -> None:
    native = float(np.mean(figures["native"]))
    cells = [f"{k} {np.mean(v):5.2f} ({np.mean(v) - native:+.2f})" for k, v in figures.items()]
    sys.stdout.write(f"{name:28s} " + " | ".join(cells) + "\n")


def resampling_only(data: Path) -> None:
    refs = sources.scan(data)
    for group in GROUPS:
        figures: dict[str, list[float]] = {}
        for ref in sources.by_group(refs, group):
            s = sources.load(ref)
            native, geometry, spacing = s.subject.ed_label, s.processed.geometry, s.subject.spacing
            figures.setdefault("native", []).append(wall(native, spacing))
            for method in ("nearest", "linear"):
                crop = apply_labels(native, geometry, method)
                figures.setdefault(f"crop {method}", []).append(crop_wall(crop, spacing[2]))
                figures.setdefault(f"back {method}", []).append(
                    wall(restore_labels(crop, geometry, method), spacing)
                )
        line(f"{group.value} resampling only", figures)


def with_model(data: Path, version: str, root: Path | None) -> None:
    vae = load_model("vae", version, root).module
    for group in GROUPS:
        figures: dict[str, list[float]] = {}
        for s, truth, decoded in crop_round_trips(vae, version, data, group):
            geometry, method, spacing = (
                s.processed.geometry,
                s.processed.label_interpolation,
                s.subject.spacing,
            )
            figures.setdefault("native", []).append(wall(s.subject.ed_label, spacing))
            figures.setdefault("crop", []).append(crop_wall(truth, spacing[2]))
            figures.setdefault("round trip crop", []).append(crop_wall(decoded, spacing[2]))
            figures.setdefault("round trip native", []).append(
                wall(restore_labels(decoded, geometry, method), spacing)
            )
        line(f"{group.value} {version} ({vae.config.label_interpolation})", figures)


if __name__ == "__main__":
    data = Path(sys.argv[1])
    resampling_only(data)
    for spec in sys.argv[2:]:
        version, _, root = spec.partition("@")
        with_model(data, version, Path(root) if root else None)
