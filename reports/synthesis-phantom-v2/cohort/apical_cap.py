"""Whether LV extents that include the apical cap (``Synthesizer(apical_cap=True)``) make the synthetic
apex and biomarkers nearer the real class than extents over the LV cavity (the default).

``apex.txt`` found the synthetic apex blunter than the real in every class: the placement into the NOR
base's cavity extent leaves the class's myocardial cap behind. For each class: its training subjects
(the data's, those the statistics come from), the held-out cohort's subjects, and 40 synthetic
subjects (default request, seed 0) with the extents over the cavity and with the cap. Per group, ED,
native grid: the biomarker means and, in 8 bins of relative position over the slices with myocardium
(base to apex), the thickest wall (mm) and the mean myocardial and cavity areas (mm2), as
``sampling_zones.py`` writes them; then the last myocardial slice's areas (processed grid, pixels), as
``apex.py`` writes them.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/apical_cap.py DATA COHORT CACHE CLASSES > OUT

(CACHE: a statistics and calibration cache; each setting's fits are made there once.)
"""

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
from apex import write as write_apex
from sampling_zones import VERSION, N, profile
from sampling_zones import write as write_profile

from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.labels import Group
from cardiosynth.models.registry import load_model
from cardiosynth.models.vae import LabelVAE
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import (
    LabelBatch,
    SynthesisRequest,
    Synthesizer,
    label_interpolation_of,
    label_stack,
)

SETTINGS = {"cavity": False, "cap": True}  # the LV extent over the cavity (default), to the cap


def synthesise(
    vae: LabelVAE, data: Path, cache: Path, group: Group, cap: bool
) -> tuple[Synthesizer, LabelBatch, list[npt.NDArray[np.uint8]]]:
    """:data:`N` synthetic subjects of ``group`` (default request, seed 0) with the LV extent over the
    cavity or to the cap: the engine, its label batch and each subject's ED stack (processed grid)."""
    synth = Synthesizer(vae, None, data, model_versions={"vae": VERSION}, cache_dir=cache, apical_cap=cap)
    batch = synth.make_labels(SynthesisRequest(group, n=N, seed=0))
    at = np.cumsum([0, *(p[3] for p in batch.plan)])
    ed = [batch.labels[at[k] : at[k + 1]] for k, p in enumerate(batch.plan) if p[2] == "ED"]
    return synth, batch, ed


def main() -> None:
    data, cohort, cache = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    groups = [Group(g) for g in sys.argv[4].split(",")]
    vae = load_model("vae", VERSION).module
    for group in groups:
        for name, root in (("train", data), ("held out", cohort)):
            refs = sources.by_group(sources.scan(root), group)
            loaded = [sources.load(r, label_interpolation_of(vae)) for r in refs]
            real = [x.subject for x in loaded]
            write_profile(group, name, [profile(s.ed_label, s.spacing) for s in real],
                          [compute_biomarkers(s.ed_label, s.es_label, s.spacing) for s in real])  # fmt: skip
            write_apex(group, name, [label_stack(x.processed, "ED") for x in loaded])
        for name, cap in SETTINGS.items():
            synth, batch, ed = synthesise(vae, data, cache, group, cap)
            made = synth.assemble(batch, None)
            profiles = [profile(s.phases[1.0]["ED"].native_labels, s.base.spacing) for s in made]
            write_profile(
                group, name, profiles, [b for s in made if (b := s.biomarkers.get(1.0)) is not None]
            )
            write_apex(group, name, ed)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
