"""Which correlation mode's draws keep a class's LVEF spread: the sampling alone.

On the processed grid (LV cavity pixels), LVEF mean and standard deviation of N synthetic subjects of
CLASS per correlation mode (`sample` family, severity 1, seed SEED) with only the round trip's decoder
calibration on and the ES extent at the nearest slice, so that nothing after the draw adds or removes
spread; beside DATA's real subjects of the class (their round trip: lvef_round_trip.py).

40 subjects are too few to compare standard deviations: over 400 the draws keep DCM's spread
(lvef_sample_size.py, lvef_sample_size.txt, and cohort/README.md).

    .venv/bin/python reports/synthesis-phantom-v2/cohort/lvef_modes.py DATA CLASS N SEED
"""

import sys
from pathlib import Path

from lvef_common import DRAWS_ALONE, batch_efs, ef, report, synthesizer

from cardiosynth.data.labels import Group
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, label_stack
from cardiosynth.synthesis.modes import CORRELATION_MODES

data, group, n, seed = Path(sys.argv[1]), Group(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
synth = synthesizer(data, **DRAWS_ALONE)
refs = sorted(sources.by_group(synth.refs, group), key=lambda r: r.subject_id)
sys.stdout.write(
    f"{group.value}, processed grid\n\n| source | subjects | LVEF % mean | SD |\n|---|---|---|---|\n"
)
report(
    "real, DATA",
    [ef(label_stack(p, "ED"), label_stack(p, "ES")) for p in (synth._load(r).processed for r in refs)],
)
for mode in CORRELATION_MODES:
    batch = synth.make_labels(SynthesisRequest(group, n=n, seed=seed, correlation=mode))  # type: ignore[arg-type]
    report(f"synthetic `{mode}`", batch_efs(batch))
