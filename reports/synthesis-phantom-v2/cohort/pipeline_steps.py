"""ED max wall thickness and myocardial mass (native grid) of each real subject of a class after each
step of the synthesis pipeline, without any sampling: its processed labels, the VAE round trip of its
own latents (with the decoder calibration), the label clean-up, equalisation to 32 slices and back
into its own LV extent, and placement into a NOR base's LV extent and native grid (the base paired
by index). Mass is 0 on the first line (not measured there).

    .venv/bin/python reports/synthesis-phantom-v2/cohort/pipeline_steps.py DATA CLASS [VERSION] >> OUT.txt
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.labels import Group
from cardiosynth.data.preprocess import restore_labels
from cardiosynth.data.topology import clean_labels
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import Synthesizer, label_stack
from cardiosynth.synthesis.equalise import equalise_lv, lv_extent, restore_lv
from cardiosynth.synthesis.stages import decode_latents, encode_stacks

data = Path(sys.argv[1])
cls = Group(sys.argv[2])
version = sys.argv[3] if len(sys.argv) > 3 else "phantom-v2c"
vae = load_model("vae", version, None).module
synth = Synthesizer(vae, None, data, model_versions={"vae": version}, cache_dir=Path(tempfile.mkdtemp()))
bias = synth.logit_bias()
subs = [sources.load(r) for r in sources.by_group(synth.refs, cls)]
nors = [sources.load(r) for r in sources.by_group(synth.refs, Group.NOR)]


def wall(stack, who):
    nat = restore_labels(stack, who.processed.geometry)
    b = compute_biomarkers(nat, nat, who.subject.spacing)
    return b.max_wall_thickness, b.myo_mass


rows = {
    k: []
    for k in (
        "native truth",
        "processed truth",
        "round trip",
        "round trip + clean",
        "equalise->own extent",
        "equalise->NOR base extent+grid",
        "  + clean",
    )
}
for i, s in enumerate(subs):
    base = nors[i % len(nors)]
    lab = label_stack(s.processed, "ED")
    blab = label_stack(base.processed, "ED")
    z, zb = encode_stacks(vae, [lab, blab])
    eq = equalise_lv(z, lab)
    rows["native truth"].append(
        (compute_biomarkers(s.subject.ed_label, s.subject.ed_label, s.subject.spacing).max_wall_thickness, 0)
    )
    rows["processed truth"].append(wall(lab, s))
    rt = decode_latents(vae, z, None, None, bias)
    rows["round trip"].append(wall(rt, s))
    rows["round trip + clean"].append(wall(clean_labels(rt), s))
    rows["equalise->own extent"].append(
        wall(decode_latents(vae, restore_lv(eq, z, lv_extent(lab)), None, None, bias), s)
    )
    placed = decode_latents(vae, restore_lv(eq, zb, lv_extent(blab)), None, None, bias)
    rows["equalise->NOR base extent+grid"].append(wall(placed, base))
    rows["  + clean"].append(wall(clean_labels(placed), base))
for k, v in rows.items():
    v = np.array(v)
    sys.stdout.write(f"{cls.value} {k:32s} wall {v[:, 0].mean():.2f} mass {v[:, 1].mean():.1f}\n")
