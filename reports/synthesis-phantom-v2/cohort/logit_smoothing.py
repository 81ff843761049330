"""Is the VAE round trip's thicker wall boundary noise? The decoder's logits of each real subject's own
ED latents (calibrated) smoothed in-plane with a Gaussian of sigma 0, 0.5, 1 and 1.5 px before the
argmax: ED max wall thickness and myocardial mass on the native grid, and the mean Dice to the truth
(first 12 subjects per class).

    python reports/synthesis-phantom-v2/cohort/logit_smoothing.py DATA DCM,RV,NOR > logit_smoothing.txt
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.labels import Group
from cardiosynth.data.overlap import dice_per_class
from cardiosynth.data.preprocess import restore_labels
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import Synthesizer, label_stack
from cardiosynth.synthesis.stages import decode_logits, encode_stacks

data = Path(sys.argv[1])
vae = load_model("vae", "phantom-v2c", None).module
synth = Synthesizer(
    vae, None, data, model_versions={"vae": "phantom-v2c"}, cache_dir=Path(tempfile.mkdtemp())
)
bias = synth.logit_bias()
for cls in (Group(c) for c in sys.argv[2].split(",")):
    subs = [sources.load(r) for r in sources.by_group(synth.refs, cls)][:12]
    rows = {}
    for s in subs:
        lab = label_stack(s.processed, "ED")
        (z,) = encode_stacks(vae, [lab])
        logits = np.concatenate(list(decode_logits(vae, z.astype(np.float32)))) + bias[None, :, None, None]
        for name, sig in (
            ("truth", None),
            ("plain", 0),
            ("sigma 0.5", 0.5),
            ("sigma 1.0", 1.0),
            ("sigma 1.5", 1.5),
        ):
            if sig is None:
                out = lab
            elif sig == 0:
                out = logits.argmax(1).astype(np.uint8)
            else:
                out = ndimage.gaussian_filter(logits, (0, 0, sig, sig)).argmax(1).astype(np.uint8)
            nat = restore_labels(out, s.processed.geometry)
            b = compute_biomarkers(nat, nat, s.subject.spacing)
            d = dice_per_class(out, lab) if sig is not None else None
            rows.setdefault(name, []).append(
                (b.max_wall_thickness, b.myo_mass, np.mean(list(d.values())) if d else 1.0)
            )
    for k, v in rows.items():
        v = np.array(v)
        sys.stdout.write(
            f"{cls.value} {k:10s} wall {v[:, 0].mean():.2f} mass {v[:, 1].mean():.1f} "
            f"dice {v[:, 2].mean():.3f}\n"
        )
