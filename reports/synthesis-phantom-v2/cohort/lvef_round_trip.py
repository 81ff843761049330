"""Where synthetic DCM's LVEF spread is lost: the decoder's round trip of real hearts, or the sampling.

On the processed grid (the decoder's own; LV cavity pixels, no restore to the native grid), LVEF mean
and standard deviation per class of: DATA's real subjects of the class; their round trip through the
shipped VAE (encode, decode with the decoder calibration, each phase's own latents); and N synthetic
subjects of the default request (seed SEED, every calibration on), dithered and at the nearest slice.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/lvef_round_trip.py DATA CLASS N SEED
"""

import sys
from pathlib import Path

from lvef_common import batch_efs, ef, report, synthesizer, vae

from cardiosynth.data.labels import Group
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, label_stack
from cardiosynth.synthesis.stages import decode_latents, encode_stacks

data, group, n, seed = Path(sys.argv[1]), Group(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model = vae()
synth = synthesizer(data)
bias = synth.decoder_calibration().logit_bias
refs = sorted(sources.by_group(synth.refs, group), key=lambda r: r.subject_id)
pairs = [(label_stack(p, "ED"), label_stack(p, "ES")) for p in (synth._load(r).processed for r in refs)]
sys.stdout.write(
    f"{group.value}, processed grid\n\n| source | subjects | LVEF % mean | SD |\n|---|---|---|---|\n"
)
report("real, DATA", [ef(ed, es) for ed, es in pairs])
trips = []
for ed, es in pairs:
    z_ed, z_es = encode_stacks(model, [ed, es])
    trips.append(
        ef(decode_latents(model, z_ed, logit_bias=bias), decode_latents(model, z_es, logit_bias=bias))
    )
report("real, DATA, round trip", trips)
for dither in (True, False):
    synth.dither_extents = dither
    batch = synth.make_labels(SynthesisRequest(group, n=n, seed=seed))
    what = "dithered" if dither else "nearest slice"
    report(f"synthetic, seed {seed}, {what}", batch_efs(batch))
