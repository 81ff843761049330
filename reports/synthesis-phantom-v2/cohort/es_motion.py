"""How far the LV moves in-plane between ED and ES, real against synthetic, and how much of the
regional heterogeneity biomarker (1 - min / median of six sector FACs, sectors fixed at the ED
cavity centroid) that motion makes.

Per class: the mean over subjects of the per-slice ED -> ES LV-cavity centroid displacement (pixels
of the native grid), its components toward the RV centroid and across (mean and SD over subjects,
mid-ventricular slices as the biomarker uses them), and the regional heterogeneity as measured and
with each ES slice moved back onto its ED slice's centroid (sub-pixel, one-hot linear, argmax).
Real: the cohort's first N subjects of the class; synthetic: the default request (`joint`/`sample`,
severity 1, shipped VAE, statistics and bases from DATA), N subjects, seed 0, labels only.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/es_motion.py DATA COHORT N CLASSES > OUT.txt
"""

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from cardiosynth.data.acdc import read_subject
from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.labels import LV_CAVITY, RV_CAVITY, Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

data, cohort, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
classes = [Group(c) for c in sys.argv[4].split(",")]
version = "phantom-v2c"
synth = Synthesizer(load_model("vae", version).module, None, data, model_versions={"vae": version})


def mid_slices(ed: np.ndarray) -> np.ndarray:
    lv = np.flatnonzero((ed == LV_CAVITY).any(axis=(0, 1)))
    drop = int(0.2 * len(lv))
    return lv[drop : len(lv) - drop] if len(lv) - 2 * drop >= 1 else lv


def displacements(ed: np.ndarray, es: np.ndarray) -> dict[int, np.ndarray]:
    """ES minus ED LV-cavity centroid per slice (pixels), where both phases have a cavity."""
    out = {}
    for k in range(ed.shape[2]):
        a, b = ed[:, :, k] == LV_CAVITY, es[:, :, k] == LV_CAVITY
        if a.sum() > 20 and b.sum() > 20:
            out[k] = np.array(ndimage.center_of_mass(b)) - np.array(ndimage.center_of_mass(a))
    return out


def rv_frame(ed: np.ndarray, es: np.ndarray) -> np.ndarray | None:
    """Mean mid-ventricular displacement (toward the RV, across), or None."""
    d, per = displacements(ed, es), []
    for k in mid_slices(ed):
        rv = ed[:, :, k] == RV_CAVITY
        if k not in d or rv.sum() < 5:
            continue
        ca = np.array(ndimage.center_of_mass(ed[:, :, k] == LV_CAVITY))
        u = np.array(ndimage.center_of_mass(rv)) - ca
        u /= np.linalg.norm(u)
        per.append([d[k] @ u, d[k] @ np.array([-u[1], u[0]])])
    return np.mean(per, axis=0) if per else None


def aligned(ed: np.ndarray, es: np.ndarray) -> np.ndarray:
    out = es.copy()
    for k, d in displacements(ed, es).items():
        shares = [(es[:, :, k] == c).astype(np.float64) for c in range(4)]
        onehot = [ndimage.shift(share, -d, order=1, mode="nearest") for share in shares]
        out[:, :, k] = np.argmax(onehot, axis=0).astype(np.uint8)
    return out


def summary(pairs: list[tuple[np.ndarray, np.ndarray, tuple[float, float, float]]]) -> str:
    frames = np.array([f for ed, es, _ in pairs if (f := rv_frame(ed, es)) is not None])
    het = [compute_biomarkers(ed, es, sp).regional_heterogeneity for ed, es, sp in pairs]
    het_al = [compute_biomarkers(ed, aligned(ed, es), sp).regional_heterogeneity for ed, es, sp in pairs]
    mean, sd = frames.mean(axis=0), frames.std(axis=0)
    return (
        f"{np.hypot(*frames.T).mean():.2f} | {mean[0]:+.2f} / {mean[1]:+.2f} | {sd[0]:.2f} / {sd[1]:.2f} | "
        f"{np.nanmean(het):.3f} | {np.nanmean(het_al):.3f}"
    )


sys.stdout.write(
    f"{n} subjects per class and source; displacement in native pixels (~1.6 mm), mid-ventricular slices\n\n"
    "| class | source | mean abs displacement | mean toward RV / across | SD toward RV / across"
    " | regional heterogeneity | ES moved onto ED |\n|---|---|---|---|---|---|---|\n"
)
cohort_subjects = [read_subject(p) for p in sorted((cohort / "training").iterdir())]
for cls in classes:
    real = [s for s in cohort_subjects if s.info.group == cls][:n]
    real_pairs = [(s.ed_label, s.es_label, s.spacing) for s in real]
    sys.stdout.write(f"| {cls.value} | real | {summary(real_pairs)} |\n")
    batch = synth.make_labels(SynthesisRequest(cls, n=n, seed=0))
    pairs = [
        (s.phases[1.0]["ED"].native_labels, s.phases[1.0]["ES"].native_labels, s.base.spacing)
        for s in synth.assemble(batch, None)
    ]
    sys.stdout.write(f"| {cls.value} | synthetic | {summary(pairs)} |\n")
    sys.stdout.flush()
