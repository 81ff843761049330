"""Why the VAE round trip thickens the thickest wall segment while keeping the myocardial mass.

For every real subject of a class (ED, native grid, no sampling), the processed labels and the VAE
round trip of their own latents (with the decoder calibration) are compared slice by slice on the
LV ring: the mean and the maximum of the wall thickness along the epicardial border (the distance
from the cavity, as :func:`cardiosynth.data.biomarkers.wall_thickness_by_sector` measures it), and
the amplitude spectrum of the thickness profile around the ring (36 angular bins, the maximum in
each; harmonic k has k bumps per turn). A round trip that keeps the mean thickness but adds
harmonics raises the maximum: the max of a profile plus an error is biased upward. Last line per
version: the latent dimensions the encoder uses (mean KL per dimension above 0.5 nats, on the
training slices), the information the decoder has to draw a ring from.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/wall_profile.py DATA VERSION [ROOT] >> OUT.txt

ROOT: a model registry root other than the shipped models (a VAE trained with ``--model-root``).
"""

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage

from cardiosynth.data.acdc import Subject
from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, Group
from cardiosynth.data.preprocess import restore_labels
from cardiosynth.models.onehot import labels_to_onehot
from cardiosynth.models.registry import load_model
from cardiosynth.models.slices import load_slices
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import Synthesizer, label_stack
from cardiosynth.synthesis.stages import decode_latents, encode_stacks

N_BINS = 36
HARMONICS = 8
MIN_CAVITY_PX = 30  # rings with a cavity smaller than this have no angular profile worth a spectrum
_CROSS = ndimage.generate_binary_structure(2, 1)


Ring = tuple[float, float, list[float]]


def border_thickness(
    label_slice: npt.NDArray[np.uint8], spacing: tuple[float, float], bins: int, min_cavity_px: int = 1
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.intp]] | None:
    """Wall thickness (mm) at each epicardial border pixel (its distance from the cavity, as the
    biomarker measures it) and its angular bin of ``bins`` about the cavity centroid; None without a
    cavity of ``min_cavity_px`` pixels or without myocardium."""
    cavity = label_slice == LV_CAVITY
    myo = label_slice == LV_MYOCARDIUM
    if cavity.sum() < min_cavity_px or not myo.any():
        return None
    distance = ndimage.distance_transform_edt(~cavity, sampling=spacing)
    border = myo & ndimage.binary_dilation(~(myo | cavity), structure=_CROSS)
    points = np.argwhere(border)
    centre = np.argwhere(cavity).mean(axis=0)
    angle = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    return distance[border], ((angle + np.pi) / (2 * np.pi) * bins).astype(np.intp) % bins


def ring(label_slice: npt.NDArray[np.uint8], spacing: tuple[float, float]) -> Ring:
    """Mean and max border thickness (mm) and the thickness profile's harmonic amplitudes (mm)."""
    found = border_thickness(label_slice, spacing, N_BINS, MIN_CAVITY_PX)
    if found is None:
        return np.nan, np.nan, [np.nan] * HARMONICS
    values, bins = found
    profile = np.array([values[bins == b].max() if (bins == b).any() else np.nan for b in range(N_BINS)])
    if np.isnan(profile).any():
        return float(values.mean()), float(values.max()), [np.nan] * HARMONICS
    amplitude = np.abs(np.fft.rfft(profile - profile.mean())) / N_BINS
    return float(values.mean()), float(values.max()), amplitude[1 : HARMONICS + 1].tolist()


GROUPS = (Group.DCM, Group.HCM, Group.MINF, Group.NOR, Group.RV)


def crop_round_trips(
    vae: torch.nn.Module, label: str, data: Path, group: Group
) -> Iterator[tuple[sources.LoadedSubject, npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
    """Each real subject of ``group`` under ``data`` (preprocessed as the VAE's training labels were)
    with its processed ED labels and their VAE round trip (own latents, the decoder calibration), both
    on the processed grid."""
    synth = Synthesizer(vae, None, data, model_versions={"vae": label}, cache_dir=Path(tempfile.mkdtemp()))
    bias = synth.logit_bias()
    for ref in sources.by_group(synth.refs, group):
        s = sources.load(ref, synth.label_interpolation)
        truth = label_stack(s.processed, "ED")
        (z,) = encode_stacks(vae, [truth])
        yield s, truth, decode_latents(vae, z, None, None, bias)


def round_trips(
    vae: torch.nn.Module, label: str, data: Path, group: Group
) -> Iterator[tuple[Subject, npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
    """:func:`crop_round_trips` restored to each subject's native grid (as the VAE's labels were
    resampled)."""
    for s, truth, decoded in crop_round_trips(vae, label, data, group):
        geometry, method = s.processed.geometry, s.processed.label_interpolation
        yield s.subject, restore_labels(truth, geometry, method), restore_labels(decoded, geometry, method)


def report(vae: torch.nn.Module, label: str, data: Path) -> None:
    """Write the per-class lines and the latent line for ``vae`` (labelled ``label``) on ``data``."""
    for group in GROUPS:
        figures: dict[str, list[list[float]]] = {"truth": [], "round trip": []}
        walls: dict[str, list[float]] = {"truth": [], "round trip": []}
        for subject, truth, decoded in round_trips(vae, label, data, group):
            for kind, native in (("truth", truth), ("round trip", decoded)):
                walls[kind].append(compute_biomarkers(native, native, subject.spacing).max_wall_thickness)
                for k in range(native.shape[2]):
                    mean, top, amplitude = ring(native[:, :, k], subject.spacing[:2])
                    figures[kind].append([mean, top, *amplitude])
        for name in ("truth", "round trip"):
            f = np.nanmean(np.array(figures[name]), axis=0)
            spectrum = " ".join(f"{a:.2f}" for a in f[2:])
            sys.stdout.write(
                f"{label} {group.value:4s} {name:10s} max wall {np.mean(walls[name]):5.2f} | per slice: "
                f"mean {f[0]:.2f} max {f[1]:.2f} | harmonics 1-{HARMONICS} (mm) {spectrum}\n"
            )

    slices = load_slices(data)
    with torch.no_grad():
        x = labels_to_onehot(torch.from_numpy(slices.labels[:: max(1, len(slices) // 1024)].astype(np.int64)))
        mu, logvar = vae.encode(x)
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean(dim=0)
    sys.stdout.write(
        f"{label} latent: {int((kl > 0.5).sum())} of {kl.numel()} dimensions used (KL > 0.5 nats), "
        f"total KL {float(kl.sum()):.1f} nats per slice\n"
    )


if __name__ == "__main__":
    version = sys.argv[2]
    report(load_model("vae", version, Path(sys.argv[3]) if len(sys.argv) > 3 else None).module, version,
           Path(sys.argv[1]))  # fmt: skip
