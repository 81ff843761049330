"""Where the synthetic wall-thickness bias comes from (issue 9), on a phantom data set.

    .venv/bin/python reports/synthesis-phantom-v2/wall/attribution.py DATA OUT.json

The evaluation's split (60 % training, seed 0) and default request (n = 10 per class, seed 0), the
shipped phantom-v2 VAE. Per class, for the held-out real subjects, their VAE round trip (posterior
mean, decoded, cleaned), the method's default output, class-mean decode and elastic NOR:

- ``cur``: the biomarker (maximal wall over every slice); ``cur_closed``: the same over the slices
  whose myocardium is a closed ring; ``seg``: the field's segmental measure on the closed rings
  (thickness along 180 rays from the cavity centroid, the mean per 60° segment, the largest segment);
- ``mid``: the biomarker over the central 60 % of the LV slices (no basal or apical slice).

Then the mechanism: the latent of an atrial slice (no LV) linearly blended with the first basal
ring's, as equalisation blends neighbouring slices of stacks whose coverage differs, decoded.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cardiosynth.data.biomarkers import _reference_angle, _sectors, global_rv_angle, wall_thickness_by_sector
from cardiosynth.data.labels import LV_CAVITY, LV_MYOCARDIUM, Group
from cardiosynth.data.preprocess import restore_labels
from cardiosynth.data.topology import clean_labels
from cardiosynth.evaluation import baselines as bl
from cardiosynth.evaluation.split import link_folder, split_subjects
from cardiosynth.evaluation.synthesis import GROUPS, from_engine
from cardiosynth.evaluation.wall import is_closed_ring
from cardiosynth.models.registry import load_vae
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer, choose_bases
from cardiosynth.synthesis.stages import decode_latents, encode_stacks

N_RAYS = 180


def _out(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def ray_segments(sl: npt.NDArray[np.uint8], spacing: tuple[float, float], rv_angle: float | None) -> float:
    """Largest 60° segment mean of the ray thickness (mm) of one slice (NaN without a measurement)."""
    c = np.argwhere(sl == LV_CAVITY).mean(axis=0)
    step = 0.1 * min(spacing)  # mm
    t = np.arange(0.0, max(sl.shape) * max(spacing), step)
    angles = np.arange(N_RAYS) * 2.0 * math.pi / N_RAYS
    thick = np.full(N_RAYS, np.nan)
    for i, a in enumerate(angles):
        ix = np.rint(c[0] + t * math.cos(a) / spacing[0]).astype(int)
        iy = np.rint(c[1] + t * math.sin(a) / spacing[1]).astype(int)
        ok = (ix >= 0) & (iy >= 0) & (ix < sl.shape[0]) & (iy < sl.shape[1])
        lab = np.full(t.size, -1, dtype=np.int16)
        lab[ok] = sl[ix[ok], iy[ok]]
        leave = np.flatnonzero(lab != LV_CAVITY)
        if leave.size == 0 or lab[leave[0]] != LV_MYOCARDIUM:
            continue  # the ray leaves the cavity into the outflow tract or the RV: no wall there
        j = leave[0]
        end = np.flatnonzero(lab[j:] != LV_MYOCARDIUM)
        if end.size:
            thick[i] = t[j + end[0]] - t[j]
    centre = (float(c[0]), float(c[1]))
    ref = _reference_angle(sl, centre, rv_angle) or 0.0
    tips = np.stack([c[0] + 100.0 * np.cos(angles), c[1] + 100.0 * np.sin(angles)], axis=1).astype(np.intp)
    sector = _sectors(tips, centre, ref)
    means = [
        float(np.nanmean(thick[sector == s]))
        for s in range(6)
        if np.isfinite(thick[sector == s]).sum() >= 0.5 * (sector == s).sum()
    ]
    return max(means) if means else math.nan


def figures(ed: npt.NDArray[np.uint8], spacing: tuple[float, float]) -> dict[str, float]:
    rv_angle = global_rv_angle(ed)
    rows = []
    for k in range(ed.shape[2]):
        sl = ed[:, :, k]
        if not (sl == LV_CAVITY).any() or not (sl == LV_MYOCARDIUM).any():
            continue
        closed = is_closed_ring(sl)
        rows.append(
            (
                float(np.nanmax(wall_thickness_by_sector(sl, spacing, rv_angle))),
                closed,
                ray_segments(sl, spacing, rv_angle) if closed else math.nan,
            )
        )
    drop = math.floor(0.2 * len(rows))
    mid = rows[drop : len(rows) - drop] or rows
    return {
        "cur": max(r[0] for r in rows),
        "cur_closed": max((r[0] for r in rows if r[1]), default=math.nan),
        "seg": max((r[2] for r in rows if np.isfinite(r[2])), default=math.nan),
        "mid": max(r[0] for r in mid),
    }


def mean_of(rows: list[dict[str, float]], key: str) -> float:
    return float(np.nanmean([r[key] for r in rows]))


def main(data: Path, out: Path) -> None:
    vae = load_vae("phantom-v2").module
    split = split_subjects(sources.scan(data), 0.6, 0)
    result: dict[str, Any] = {"classes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = link_folder(split.train_refs(), Path(tmp) / "train")
        synth = Synthesizer(vae, None, root, model_versions={"vae": "phantom-v2"})
        nor_refs = sources.by_group(synth.refs, Group.NOR)
        for g in GROUPS:
            held = [sources.load(r) for r in split.held_out[g]]
            rows: dict[str, list[dict[str, float]]] = {}
            rows["real"] = [figures(x.subject.ed_label.astype(np.uint8), x.subject.spacing[:2]) for x in held]
            latents = encode_stacks(vae, [x.processed.ed_label for x in held])
            rows["vae_roundtrip"] = [
                figures(
                    restore_labels(clean_labels(decode_latents(vae, z)), x.processed.geometry),
                    x.subject.spacing[:2],
                )
                for x, z in zip(held, latents, strict=True)
            ]
            req = SynthesisRequest(g, n=10, seed=0)
            bases = [sources.load(r) for r in choose_bases(nor_refs, req)]
            made = {
                "method": [s.ed for s in from_engine(synth.run(req))],
                "class_mean": [
                    clean_labels(p[0])
                    for p in bl.class_mean_decode(
                        vae,
                        synth.class_stats(g, "ED"),
                        synth.class_stats(g, "ES"),
                        [len(b.processed.ed_label) for b in bases],
                    ).pairs
                ],
                "elastic_nor": [
                    p[0]
                    for p in bl.elastic_nor([(b.processed.ed_label, b.processed.es_label) for b in bases], 0)
                ],
            }
            for name, stacks in made.items():
                rows[name] = [
                    figures(restore_labels(s, b.processed.geometry), b.subject.spacing[:2])
                    for s, b in zip(stacks, bases, strict=True)
                ]
            real = {k: mean_of(rows["real"], k) for k in ("cur", "cur_closed", "seg", "mid")}
            summary = {
                name: {k: mean_of(rs, k) - real[k] for k in real}
                for name, rs in rows.items()
                if name != "real"
            }
            result["classes"][g.value] = {"real_means_mm": real, "bias_mm": summary, "subjects": rows}
            _out(g.value, "real", {k: round(v, 1) for k, v in real.items()})
            for name, s in summary.items():
                _out("  ", name, "bias", {k: round(v, 1) for k, v in s.items()})
        # The mechanism: atrial slice -> first basal ring, blended in latent space.
        blends = []
        for g in split.train:
            for ref in split.train[g]:
                st = sources.load(ref).processed.ed_label
                if (st[0] == LV_CAVITY).any() or not (st[1] == LV_CAVITY).any():
                    continue
                z = encode_stacks(vae, [st])[0]
                ts = (0.0, 0.25, 0.5, 0.75, 1.0)
                decoded = decode_latents(vae, np.stack([(1 - t) * z[0] + t * z[1] for t in ts]))
                walls = []
                for d in decoded:
                    has = (d == LV_CAVITY).any() and (d == LV_MYOCARDIUM).any()
                    walls.append(
                        float(np.nanmax(wall_thickness_by_sector(d, (1.5, 1.5)))) if has else math.nan
                    )
                blends.append(walls)
        result["atrial_to_basal_blend"] = {"t": [0.0, 0.25, 0.5, 0.75, 1.0], "max_wall_mm": blends}
        _out(
            "atrial -> basal blend, max wall mm at t = 0, .25, .5, .75, 1 (median over",
            len(blends),
            "stacks):",
        )
        _out("  ", [round(float(v), 1) for v in np.nanmedian(np.array(blends), axis=0)])
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
