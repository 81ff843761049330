"""How far the sampling calibration's logit offsets can move the synthetic LV's areas.

A synthetic ES extent one slice shorter than its ED extent loses about a tenth of its ES volume
(extent_subgroups.txt); a real one does not. Offsets per extent length (a table of offsets per ED-over-
ES length ratio) would need the LV cavity's and myocardium's areas per slice about 10 % larger at once.
This measures what offsets can do: on the default request's sampling calibration end points of CLASS
at ES (shipped VAE, every calibration on, the same 128 end points engine.sampling_calibration fits on),
the decoded LV cavity, myocardium and LV total counts over the class's truth, with the fitted offsets
moved by d on both LV labels (the LV's outer border against background and RV) or on the cavity only
(the cavity against its own wall), d within the fit's admissible +-MARGIN/2. Then the extent table the
engine would need, fitted at each ratio, and whether it reached its counts.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/offset_response.py DATA CLASS > OUT.txt
"""

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis.calibration import MARGIN, DecoderCalibration, RoundTripEvidence, fit_logit_bias
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

data, group = Path(sys.argv[1]), Group(sys.argv[2])
version = "phantom-v2c"
captured: dict[str, Any] = {}
fit = DecoderCalibration.fit.__func__


def capture(cls: type, evidence: RoundTripEvidence, n_slices: int, *args: Any, **kwargs: Any) -> Any:
    captured["evidence"] = evidence
    return fit(cls, evidence, n_slices, *args, **kwargs)


DecoderCalibration.fit = classmethod(capture)
with tempfile.TemporaryDirectory() as cache:  # an empty cache: the fit runs and its evidence is seen
    model = load_model("vae", version).module
    synth = Synthesizer(model, None, data, model_versions={"vae": version}, cache_dir=Path(cache))
    fitted = synth.sampling_calibration(SynthesisRequest(group, n=1), "ES")
evidence: RoundTripEvidence = captured["evidence"]
truth = evidence.truth.astype(np.float64)
myo, cav = LV_MYOCARDIUM, LV_CAVITY


def ratios(bias: np.ndarray) -> tuple[float, float, float]:
    n = evidence.counts(bias)
    return n[cav] / truth[cav], n[myo] / truth[myo], (n[cav] + n[myo]) / (truth[cav] + truth[myo])


out = sys.stdout
out.write(
    f"{group.value} ES, {fitted.n_slices} slices of sampling calibration end points; fitted offsets "
    f"{np.round(fitted.logit_bias, 3).tolist()} (admissible +-{MARGIN / 2})\n\n"
    "| moved | d | cavity / truth | myocardium / truth | LV total / truth |\n|---|---|---|---|---|\n"
)
for what, labels in (("both LV labels", (myo, cav)), ("cavity only", (cav,))):
    for d in (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0):
        bias = fitted.logit_bias.copy()
        bias[list(labels)] += d
        c, m, t = ratios(bias)
        out.write(f"| {what} | {d:+.1f} | {c:.3f} | {m:.3f} | {t:.3f} |\n")
out.write(
    "\nThe extent table: offsets fitted (fit_logit_bias, from the fitted offsets) to the truth times each\n"
    "ED-over-ES length ratio, and the counts they reach.\n\n"
    "| ratio | offsets (myocardium, cavity) | cavity / target | myocardium / target |\n|---|---|---|---|\n"
)
for ratio in (0.9, 1.0, 1.05, 1.1, 1.15, 1.25):
    scaled = RoundTripEvidence(
        np.rint(evidence.truth * ratio).astype(np.int64), evidence.certain, evidence.parts
    )
    bias = fit_logit_bias(scaled, (myo, cav), fitted.logit_bias)
    c, m, _ = ratios(bias)
    out.write(f"| {ratio:.2f} | {bias[myo]:+.2f}, {bias[cav]:+.2f} | {c / ratio:.3f} | {m / ratio:.3f} |\n")
out.flush()
