"""Putting decoded crops back on the native grid from the decoder's probabilities instead of its labels.

For every real subject per class (ED), the VAE round trip of its own latents (the decoder
calibration) restored to the native grid four ways: the engine's way (argmax on the 1.5 mm grid,
then the labels resampled: two rasterisations), each class's softmax probability interpolated
linearly or cubically to the native grid and the argmax taken there (one rasterisation, the
boundary where the decoder puts it between pixels), and a control: the argmax labels' one-hot
smoothed (Gaussian, 0.75 pixel) and treated as probabilities (a smooth field without the decoder's
sub-pixel information). Maximal wall thickness, myocardial mass and LV volume against the native
labels'.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/soft_restore.py DATA VERSION [ROOT]
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage
from wall_profile import GROUPS

from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.labels import BACKGROUND
from cardiosynth.data.preprocess import Geometry, _from_stack, restore_labels
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import Synthesizer, label_stack
from cardiosynth.synthesis.stages import encode_stacks


def restore_probabilities(
    probs: npt.NDArray[np.float32], geometry: Geometry, order: int
) -> npt.NDArray[np.uint8]:
    """``(Z, C, S, S)`` class probabilities to native ``(X, Y, Z)`` labels: each class interpolated
    (spline ``order``) onto the native grid, then the argmax there."""
    sx, sy = geometry.scale
    offset = (0.5 / sx - 0.5 - geometry.crop_start[0], 0.5 / sy - 0.5 - geometry.crop_start[1], 0.0)
    shares = [
        ndimage.affine_transform(
            _from_stack(probs[:, c].astype(np.float64), geometry),
            matrix=(1.0 / sx, 1.0 / sy, 1.0),
            offset=offset,
            output_shape=geometry.native_shape,
            order=order,
            mode="constant",
            cval=1.0 if c == BACKGROUND else 0.0,
        )
        for c in range(probs.shape[1])
    ]
    return np.argmax(np.stack(shares), axis=0).astype(np.uint8)


def report(data: Path, version: str, root: Path | None) -> None:
    vae = load_model("vae", version, root).module
    synth = Synthesizer(vae, None, data, model_versions={"vae": version}, cache_dir=Path(tempfile.mkdtemp()))
    bias = torch.from_numpy(np.asarray(synth.logit_bias(), np.float32)).view(1, -1, 1, 1)
    for group in GROUPS:
        figures: dict[str, list[tuple[float, float, float]]] = {}
        for ref in sources.by_group(synth.refs, group):
            s = sources.load(ref, synth.label_interpolation)
            (z,) = encode_stacks(vae, [label_stack(s.processed, "ED")])
            with torch.no_grad():
                logits = vae.decode(torch.from_numpy(np.asarray(z, np.float32))) + bias
            probs = torch.softmax(logits, 1).numpy()
            labels = logits.argmax(1).numpy().astype(np.uint8)
            smoothed = np.stack([ndimage.gaussian_filter((labels == c).astype(np.float32), (0, 0.75, 0.75))
                                 for c in range(probs.shape[1])], axis=1)  # fmt: skip
            geometry = s.processed.geometry
            candidates = {
                "native": s.subject.ed_label,
                "labels resampled": restore_labels(labels, geometry, s.processed.label_interpolation),
                "probabilities linear": restore_probabilities(probs, geometry, 1),
                "probabilities cubic": restore_probabilities(probs, geometry, 3),
                "labels smoothed": restore_probabilities(smoothed, geometry, 1),
            }
            for name, labels in candidates.items():
                b = compute_biomarkers(labels, labels, s.subject.spacing)
                figures.setdefault(name, []).append((b.max_wall_thickness, b.myo_mass, b.lv_edv))
        base = np.mean(figures["native"], axis=0)
        cells = []
        for name, values in figures.items():
            wall, mass, lv = np.mean(values, axis=0) - base
            cells.append(
                f"{name} wall {wall + base[0]:5.2f} ({wall:+.2f}) mass {mass:+.1f} g LV {lv:+.1f} ml"
            )
        sys.stdout.write(f"{version} {group.value:4s} " + " | ".join(cells) + "\n")


if __name__ == "__main__":
    report(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]) if len(sys.argv) > 3 else None)
