"""Is the synthetic LV's area per slice too large, or were 40 subjects too few to tell: the ED LV
cavity area per slice (mm2, processed grid) of each stack over its placed LV extent (a synthetic
stack's is its base's ED extent), its mean, SD and standard error, over DATA's real subjects of each
class in CLASSES (comma-separated) and N synthetic subjects (default request, ED, severity 1, seed 0,
in chunks of 100), with the mean of the first 40 (lv_area_steps.txt's subjects).

    .venv/bin/python reports/synthesis-phantom-v2/cohort/lv_area_sample_size.py DATA CLASSES N
"""

import sys
from pathlib import Path

import numpy as np

from cardiosynth.data.labels import LV_CAVITY, Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer, label_stack
from cardiosynth.synthesis.equalise import lv_extent

data, n = Path(sys.argv[1]), int(sys.argv[3])
version = "phantom-v2c"
PIXEL_MM2, CHUNK, FIRST = 1.5**2, 100, 40
model = load_model("vae", version).module
synth = Synthesizer(model, None, data, model_versions={"vae": version})


def area(stack: np.ndarray, extent: tuple[int, int]) -> float:
    first, last = extent
    return float((stack[first : last + 1] == LV_CAVITY).sum() / (last - first + 1) * PIXEL_MM2)


def row(name: str, values: list[float]) -> None:
    a = np.asarray(values)
    sd = a.std(ddof=1)
    cells = f"{len(a)} | {a.mean():.0f} | {sd:.0f} | {sd / np.sqrt(len(a)):.0f} | {a[:FIRST].mean():.0f}"
    sys.stdout.write(f"| {name} | {cells} |\n")
    sys.stdout.flush()


sys.stdout.write(
    f"| class, source | subjects | LV cavity mm2 per slice | SD | SE | mean of the first {FIRST} |\n"
    "|---|---|---|---|---|---|\n"
)
for name in sys.argv[2].split(","):
    group = Group(name)
    refs = sorted(sources.by_group(synth.refs, group), key=lambda r: r.subject_id)
    real = [label_stack(synth._load(r).processed, "ED") for r in refs]
    row(f"{name}, real", [area(s, lv_extent(s)) for s in real])
    request = SynthesisRequest(group, n=n, seed=0, phases=("ED",))
    values = []
    for k in range(0, n, CHUNK):
        batch = synth.make_labels(request, subjects=range(k, min(k + CHUNK, n)))
        bases = synth._batch_bases(batch)
        at = 0
        for index, _, _, z in batch.plan:
            placed = lv_extent(label_stack(bases[batch.base_ids[index]].processed, "ED"))
            values.append(area(batch.labels[at : at + z], placed))
            at += z
    row(f"{name}, synthetic", values)
