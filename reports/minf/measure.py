"""n=20 synthetic MINF at severity 1 with the shipped phantom-v1 VAE on the v2 phantom: rule diagnosis."""

import collections
import contextlib
import logging
import sys
from pathlib import Path

from cardiosynth.data.labels import Group
from cardiosynth.data.territory import estimate_territory
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer


def _out(*parts: object, flush: bool = False) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")


logging.basicConfig(level=logging.WARNING)
data = Path(sys.argv[1])
vae = load_model("vae", sys.argv[2] if len(sys.argv) > 2 else "phantom-v1", None)
synth = Synthesizer(
    vae.module, None, data, model_versions={"vae": vae.version}, cache_dir=Path("/tmp/minf/cache")
)
_out("territories:", collections.Counter(synth.minf_territories().values()))


def run(label, request, pooled=False):
    if pooled:
        synth.subject_territories = lambda r: [None] * r.n
    subjects = synth.assemble(synth.make_labels(request), None)
    if pooled:
        del synth.subject_territories
    calls = [s.diagnosis[1.0]["group"] for s in subjects]
    agree = 0
    for s in subjects:
        if s.territory is not None:
            ph = s.phases[1.0]
            with contextlib.suppress(ValueError):
                agree += estimate_territory(ph["ED"].labels, ph["ES"].labels).territory == s.territory
    _out(
        f"{label}: MINF {calls.count('MINF')}/{len(calls)}  {dict(collections.Counter(calls))}  "
        f"territories {dict(collections.Counter(s.territory for s in subjects))}  "
        f"synthetic territory estimate agrees {agree}/{sum(s.territory is not None for s in subjects)}",
        flush=True,
    )


for interp in ("sample", "shift"):
    run(
        f"default (territory drawn), {interp}",
        SynthesisRequest(Group.MINF, n=20, seed=0, interpolation=interp),
    )
    run(
        f"pooled MINF (no territory), {interp}",
        SynthesisRequest(Group.MINF, n=20, seed=0, interpolation=interp),
        pooled=True,
    )
for t in ("LAD", "LCx", "RCA"):
    run(f"territory {t}, sample", SynthesisRequest(Group.MINF, n=20, seed=0, territory=t))
