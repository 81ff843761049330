"""Is the round trip's boundary error locked to the decoder's coarse grid? A check, no training.

The decoder draws a 128 x 128 map from an 8 x 8 grid of feature vectors (cells of 16 pixels),
upsampled four times. If the ring's thickness wobble (harmonics 3-8, periods of 1-3 cells) were the
grid's, the round trip's errors near a boundary would depend on where a pixel sits inside its
cell. For every real subject (ED and ES, the processed 1.5 mm grid, own latents, the decoder
calibration), pixels within one pixel of a true class boundary are counted by their phase ``(row
mod P, col mod P)`` and, of those, the ones the round trip labels wrongly. Per period P: the
spread (coefficient of variation) of the error rate over the P x P phases, against what the
binomial noise of those counts alone would give. P = 16 (the coarse cells), 8 and 4 (the later
stages' cells), and 11 and 13 (no period of the network: the null).

    .venv/bin/python reports/synthesis-phantom-v2/cohort/decoder_grid.py DATA [VERSION] >> OUT.txt
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from cardiosynth.data.labels import Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import Synthesizer, label_stack
from cardiosynth.synthesis.stages import decode_latents, encode_stacks

PERIODS = (16, 8, 4, 13, 11)


def near_boundary(labels: np.ndarray) -> np.ndarray:
    """Pixels within one pixel (8-neighbourhood) of a change of label, per slice ``(Z, S, S)``."""
    footprint = np.ones((1, 3, 3), dtype=bool)
    high = ndimage.maximum_filter(labels, footprint=footprint)
    return np.asarray(high != ndimage.minimum_filter(labels, footprint=footprint))


if __name__ == "__main__":
    data = Path(sys.argv[1])
    version = sys.argv[2] if len(sys.argv) > 2 else "phantom-v2c"
    vae = load_model("vae", version).module
    synth = Synthesizer(vae, None, data, model_versions={"vae": version}, cache_dir=Path(tempfile.mkdtemp()))
    bias = synth.logit_bias()
    counts = {p: np.zeros((p, p)) for p in PERIODS}
    errors = {p: np.zeros((p, p)) for p in PERIODS}
    for group in Group:
        for ref in sources.by_group(synth.refs, group):
            s = sources.load(ref, synth.label_interpolation)
            for phase in ("ED", "ES"):
                truth = label_stack(s.processed, phase)
                (z,) = encode_stacks(vae, [truth])
                decoded = decode_latents(vae, z, None, None, bias)
                band = near_boundary(truth)
                wrong = band & (decoded != truth)
                _, rows, cols = np.nonzero(band)
                wrong_at = wrong[band]
                for p in PERIODS:
                    np.add.at(counts[p], (rows % p, cols % p), 1)
                    np.add.at(errors[p], (rows % p, cols % p), wrong_at)
    total_n, total_e = counts[16].sum(), errors[16].sum()
    sys.stdout.write(f"{version}: {int(total_n)} boundary-band pixels, error rate {total_e / total_n:.4f}\n")
    for p in PERIODS:
        rate = errors[p] / counts[p]
        mean = total_e / total_n
        noise = np.sqrt(mean * (1 - mean) / counts[p]).mean()  # binomial SD of one phase's rate
        role = "coarse cells" if p == 16 else "decoder stage" if p in (8, 4) else "null"
        sys.stdout.write(
            f"period {p:2d} ({role:13s}): error rate over phases {rate.min():.4f}-{rate.max():.4f}, "
            f"SD {rate.std():.4f} (binomial noise {noise:.4f}), CV {rate.std() / mean:.3f}\n"
        )
