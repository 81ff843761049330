"""Where the synthetic LV lies at ES: its slice count against the class's, with the placement's two roundings.

Per class: the ES / ED LV slice count ratio and the ES extent's mean offsets (equalise.extent_offsets,
in ED extent lengths) of DATA's real subjects (the statistics' own) and COHORT's (held out); then the
ratio the engine's placement (equalise.target_extent at severity 1, the class's mean offsets from
DATA) gives N synthetic subjects on the default request's NOR bases (seed 0), rounded to the nearest
slice and with each subject's dither (engine.extent_dither). Labels only; no decoding.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/extent_rounding.py DATA COHORT N > OUT.txt
"""

import sys
from pathlib import Path

import numpy as np

from cardiosynth.data.acdc import read_subject
from cardiosynth.data.labels import Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import (
    SynthesisRequest,
    Synthesizer,
    choose_bases,
    extent_dither,
    label_stack,
)
from cardiosynth.synthesis.equalise import extent_offsets, lv_extent, target_extent

data, cohort, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
version = "phantom-v2c"
synth = Synthesizer(load_model("vae", version).module, None, data, model_versions={"vae": version})
nor = sources.by_group(synth.refs, Group.NOR)


def length(extent: tuple[int, int]) -> int:
    return extent[1] - extent[0] + 1


sys.stdout.write(
    "| class | source | subjects | ES / ED slices | ES first offset | ES last offset | shorter at ES |\n"
    "|---|---|---|---|---|---|---|\n"
)
for group in (Group.DCM, Group.HCM, Group.MINF, Group.NOR, Group.RV):
    for name, root in (("real, DATA", data), ("real, COHORT", cohort)):
        ratios, offsets = [], []
        for path in sorted((root / "training").iterdir()):
            s = read_subject(path)
            if s.info.group != group:
                continue
            ed, es = np.moveaxis(s.ed_label, 2, 0), np.moveaxis(s.es_label, 2, 0)
            ratios.append(length(lv_extent(es)) / length(lv_extent(ed)))
            offsets.append(extent_offsets(ed, es))
        o = np.mean(offsets, axis=0)
        sys.stdout.write(
            f"| {group.value} | {name} | {len(ratios)} | {np.mean(ratios):.3f} | {o[0]:.3f} | {o[1]:.3f}"
            f" | {np.mean(np.array(ratios) < 1):.2f} |\n"
        )
    cls = synth.class_stats(group, "ES").extent_offset
    bases = choose_bases(nor, SynthesisRequest(group, n=n, seed=0))
    for name, dithered in (("synthetic, nearest slice", False), ("synthetic, dithered", True)):
        ratios = []
        for index, ref in enumerate(bases):
            ed = label_stack(synth._base(ref).processed, "ED")
            extent = lv_extent(ed)
            dither = extent_dither(0, index) if dithered else None
            ratios.append(length(target_extent(extent, (0, 0), cls, 1.0, len(ed), dither)) / length(extent))
        sys.stdout.write(
            f"| {group.value} | {name} | {len(ratios)} | {np.mean(ratios):.3f} | {cls[0]:.3f} | {cls[1]:.3f}"
            f" | {np.mean(np.array(ratios) < 1):.2f} |\n"
        )
    sys.stdout.flush()
