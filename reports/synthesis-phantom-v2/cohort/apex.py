"""Why the synthetic apex is blunter than the real: the areas along the ventricle of each class's real
subjects after each placement step, without sampling, against the synthetic subjects.

For every real subject of a class (ED): its processed labels, the VAE round trip of its own latents
(the decoder calibration), the same after equalisation to 32 slices and back into its own LV extent,
and into a NOR base's LV extent (the bases paired by index, as ``pipeline_steps.py`` does); then 40
synthetic subjects (default request, seed 0). Per stack, on the processed grid (pixels), in 8 bins of
relative position over the slices with myocardium (base to apex, as ``sampling_zones.py``): the mean
myocardial and LV cavity areas; and the slices with myocardium, and the last such slice's areas.

    .venv/bin/python reports/synthesis-phantom-v2/cohort/apex.py DATA CACHE CLASSES > OUT
"""

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, Group
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer, label_stack
from cardiosynth.synthesis.equalise import equalise_lv, lv_extent, restore_lv
from cardiosynth.synthesis.stages import decode_latents, encode_stacks

BINS = 8
N = 40
VERSION = "phantom-v2c"
Stack = npt.NDArray[np.uint8]


def profile(stack: Stack) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int, float, float]:
    """Per bin (base to apex) over a ``(Z, S, S)`` stack's slices with myocardium: mean myocardial and
    cavity pixels; the number of such slices and the last one's myocardial and cavity pixels."""
    slices = [k for k in range(len(stack)) if (stack[k] == LV_MYOCARDIUM).any()]
    myo = np.array([(stack[k] == LV_MYOCARDIUM).sum() for k in slices], dtype=np.float64)
    cavity = np.array([(stack[k] == LV_CAVITY).sum() for k in slices], dtype=np.float64)
    where = ((np.arange(len(slices)) + 0.5) / len(slices) * BINS).astype(int)
    bins = [np.flatnonzero(where == b) for b in range(BINS)]
    m = np.array([myo[i].mean() if i.size else np.nan for i in bins])
    c = np.array([cavity[i].mean() if i.size else np.nan for i in bins])
    return m, c, len(slices), float(myo[-1]), float(cavity[-1])


def write(group: Group, name: str, stacks: list[Stack]) -> None:
    found = [profile(s) for s in stacks]
    m = np.nanmean(np.array([f[0] for f in found]), axis=0)
    c = np.nanmean(np.array([f[1] for f in found]), axis=0)
    last = np.mean([[f[2], f[3], f[4]] for f in found], axis=0)
    sys.stdout.write(
        f"{group.value:4s} {name:22s} slices {last[0]:4.1f} last myo {last[1]:5.0f} cavity {last[2]:5.0f} | "
        "myo " + " ".join(f"{v:4.0f}" for v in m) + " | cavity " + " ".join(f"{v:4.0f}" for v in c) + "\n"
    )


def main() -> None:
    data, cache = Path(sys.argv[1]), Path(sys.argv[2])
    vae = load_model("vae", VERSION).module
    synth = Synthesizer(vae, None, data, model_versions={"vae": VERSION}, cache_dir=cache)
    bias = synth.logit_bias()
    nors = [sources.load(r, synth.label_interpolation) for r in sources.by_group(synth.refs, Group.NOR)]
    for group in [Group(g) for g in sys.argv[3].split(",")]:
        real = [sources.load(r, synth.label_interpolation) for r in sources.by_group(synth.refs, group)]
        rows: dict[str, list[Stack]] = {k: [] for k in ("real", "round trip", "equalised, own extent",
                                                         "equalised, NOR extent")}  # fmt: skip
        for i, s in enumerate(real):
            base = label_stack(nors[i % len(nors)].processed, "ED")
            labels = label_stack(s.processed, "ED")
            z, zb = encode_stacks(vae, [labels, base])
            eq = equalise_lv(z, labels)
            rows["real"].append(labels)
            rows["round trip"].append(decode_latents(vae, z, None, None, bias))
            own = restore_lv(eq, z, lv_extent(labels))
            placed = restore_lv(eq, zb, lv_extent(base))
            rows["equalised, own extent"].append(decode_latents(vae, own, None, None, bias))
            rows["equalised, NOR extent"].append(decode_latents(vae, placed, None, None, bias))
        batch = synth.make_labels(SynthesisRequest(group, n=N, seed=0))
        at = np.cumsum([0, *(p[3] for p in batch.plan)])
        rows["synthetic"] = [
            batch.labels[at[k] : at[k + 1]] for k, p in enumerate(batch.plan) if p[2] == "ED"
        ]
        for name, stacks in rows.items():
            write(group, name, stacks)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
