"""What is left of the synthetic wall-thickness bias after equalisation over the LV extent (issue 9).

    nice -n 10 .venv/bin/python reports/synthesis-phantom-v2/lv-extent/temperature.py DATA OUT.json \
        [MODE [TAUS [uncalibrated]]]

The evaluation's split (60 % training, seed 0) and default request (n = 10 per class, seed 0, mode
``slices``, ``sample``), the shipped phantom-v2 VAE, the engine of this commit. Per class, the bias
of the maximal diastolic wall (the evaluation's biomarker, and ``mid``: the same over the central
60 % of the LV slices) against the held-out real subjects, for:

- ``vae_roundtrip``: the held-out real subjects encoded, decoded, cleaned (the VAE's share);
- ``tau=T``: the default request with its copula sample pulled toward the class mean,
  ``mean + T (sample - mean)``, in the LV extent of the base (its own slices outside), decoded and
  cleaned as the engine does. ``tau=0`` is class-mean decode, ``tau=1`` the method.

Every decode uses the engine's decoder calibration (``synthesis/calibration.py``) unless the fifth
argument is ``uncalibrated`` (the figures of ``temperature*.json`` before it, issue 9's earlier stop).

If the bias grows with ``T``, the sampler's spread itself thickens walls (the decoder turns latents
off the class manifold into solid myocardium), not the placement of the slices.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cardiosynth.data.biomarkers import compute_biomarkers
from cardiosynth.data.labels import Group
from cardiosynth.data.preprocess import restore_labels
from cardiosynth.data.topology import clean_labels
from cardiosynth.evaluation.split import link_folder, split_subjects
from cardiosynth.evaluation.synthesis import GROUPS
from cardiosynth.models.registry import load_vae
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer, choose_bases, target_latents
from cardiosynth.synthesis.equalise import equalise_lv, lv_extent, restore_lv
from cardiosynth.synthesis.modes import check_mode
from cardiosynth.synthesis.stages import decode_latents, encode_stacks

TAUS = (0.0, 0.5, 1.0)


def mid_wall(ed: np.ndarray, spacing: tuple[float, float]) -> float:
    """The maximal wall over the central 60 % of the LV slices (native ``(X, Y, Z)`` labels)."""
    from cardiosynth.data.biomarkers import global_rv_angle, wall_thickness_by_sector
    from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM

    rv_angle = global_rv_angle(ed)
    walls = [
        float(np.nanmax(wall_thickness_by_sector(ed[:, :, k], spacing, rv_angle)))
        for k in range(ed.shape[2])
        if (ed[:, :, k] == LV_CAVITY).any() and (ed[:, :, k] == LV_MYOCARDIUM).any()
    ]
    drop = math.floor(0.2 * len(walls))
    return max(walls[drop : len(walls) - drop] or walls) if walls else math.nan


def wall(x: sources.LoadedSubject, ed: np.ndarray, es: np.ndarray) -> dict[str, float]:
    s = x.subject
    b = compute_biomarkers(ed, es, s.spacing, height=s.info.height, weight=s.info.weight)
    return {"cur": float(b.max_wall_thickness), "mid": mid_wall(ed, s.spacing[:2])}


def main(
    data: Path, out: Path, mode: str = "slices", taus: tuple[float, ...] = TAUS, calibrate: bool = True
) -> None:
    vae = load_vae("phantom-v2").module
    split = split_subjects(sources.scan(data), 0.6, 0)
    result: dict[str, Any] = {"correlation": mode, "taus": list(taus), "calibrated": calibrate, "classes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = link_folder(split.train_refs(), Path(tmp) / "train")
        synth = Synthesizer(
            vae, None, root, model_versions={"vae": "phantom-v2"}, calibrate_decoder=calibrate
        )
        nor_refs = sources.by_group(synth.refs, Group.NOR)
        for g in GROUPS:
            held = [sources.load(r) for r in split.held_out[g]]
            rows: dict[str, list[dict[str, float]]] = {}
            rows["real"] = [wall(x, x.subject.ed_label, x.subject.es_label) for x in held]
            rt = []
            for x in held:
                encoded = encode_stacks(vae, [x.processed.ed_label, x.processed.es_label])
                rt.append(
                    [
                        restore_labels(
                            clean_labels(decode_latents(vae, z, logit_bias=synth.logit_bias())),
                            x.processed.geometry,
                        )
                        for z in encoded
                    ]
                )
            rows["vae_roundtrip"] = [wall(x, ed, es) for x, (ed, es) in zip(held, rt, strict=True)]
            req = SynthesisRequest(g, n=10, seed=0, correlation=check_mode(mode))
            bases = [sources.load(r) for r in choose_bases(nor_refs, req)]
            territories = synth.subject_territories(req)  # MINF: per subject, as the engine draws them
            for tau in taus:
                made = []
                for index, b in enumerate(bases):
                    pair = []
                    for ph in ("ED", "ES"):
                        rng = np.random.default_rng([req.seed, index])  # the engine's stream
                        stack = b.processed.phase(ph).label
                        (own,) = encode_stacks(vae, [stack])
                        base_eq = equalise_lv(own, stack, req.ns)
                        stats = synth.class_stats(g, ph, req.ns, territories[index])
                        target = target_latents(req, stats, None, base_eq, rng)
                        z = stats.mean + tau * (target - stats.mean)
                        placed = restore_lv(z, own, lv_extent(stack))
                        lab = clean_labels(decode_latents(vae, placed, logit_bias=synth.logit_bias()))
                        pair.append(restore_labels(lab, b.processed.geometry))
                    made.append(wall(b, pair[0], pair[1]))
                rows[f"tau={tau}"] = made
            real = {k: float(np.nanmean([r[k] for r in rows["real"]])) for k in ("cur", "mid")}
            bias = {
                name: {k: float(np.nanmean([r[k] for r in rs])) - real[k] for k in real}
                for name, rs in rows.items()
                if name != "real"
            }
            result["classes"][g.value] = {"real_mm": real, "bias_mm": bias, "subjects": rows}
            line = "  ".join(f"{n} {v['cur']:+.1f}/{v['mid']:+.1f}" for n, v in bias.items())
            sys.stdout.write(f"{g.value} real {real['cur']:.1f}/{real['mid']:.1f}  bias cur/mid: {line}\n")
            sys.stdout.flush()
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    args = sys.argv[1:]
    chosen = tuple(float(t) for t in args[3].split(",")) if len(args) > 3 else TAUS
    calibrated = not (len(args) > 4 and args[4] == "uncalibrated")
    main(Path(args[0]), Path(args[1]), args[2] if len(args) > 2 else "slices", chosen, calibrated)
