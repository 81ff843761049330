"""How much of a reference slice's appearance the SPADE style code carries, per translator.

    .venv/bin/python reports/realism-phantom-v2/style_transfer.py DATA VERSION [VERSION ...] \
        [--model-root ROOT] > reports/realism-phantom-v2/style_transfer.txt

DATA: the default phantom the translators were trained on (``cardiosynth phantom --subjects 100
--seed 0``); the figures are on the 20 subjects each card lists as held out. Each held-out slice is
translated from its own labels with its own image as the style reference (what ``cardiosynth
evaluate models`` does). Printed per translator:

- the style posterior's KL to the prior (nats per slice, summed over the code's dimensions): how
  much the code can carry at all;
- R2 of each slice's LV blood mean intensity from the posterior mean (least squares): how much of
  the one appearance figure that varies most between slices the code holds;
- per slice (LV blood > 50 pixels): the real and the translated LV blood mean, their correlation
  and the regression slope of translated on real (1 when the style is carried, 0 when ignored),
  over all slices and within subjects (each subject's mean removed);
- the pooled class means' relative differences (the models evaluation's intensity figure), and the
  blood's mean more than 4 pixels (6 mm) inside its label, real and translated: the translator's
  brightness away from the edges' partial volume;
- whether the code carries anatomy: every slice translated again with another held-out slice as its
  reference (a fixed permutation), the share of bright pixels (> 0.2) where only the reference has
  blood, against the share where neither the labels nor the reference have blood (equal: no leak).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from cardiosynth.models.registry import load_model
from cardiosynth.models.slices import load_slices
from cardiosynth.models.spade import SpadeTranslator, translate_array
from cardiosynth.models.train_spade import class_means

MIN_BLOOD_PX = 50
INTERIOR_PX = 4
BRIGHT = 0.2


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return float(np.corrcoef(x, y)[0, 1]), float(np.polyfit(x, y, 1)[0])


def report(data: Path, version: str, root: Path | None) -> str:
    spade = load_model("spade", version, root)
    model = spade.module
    if not isinstance(model, SpadeTranslator):
        raise ValueError(f"{version} is not a SPADE translator")
    slices = load_slices(data)
    held = [s for s in spade.card.get("heldout_subjects", []) if s in slices.subject_ids]
    if not held:
        raise ValueError(f"none of {version}'s held-out subjects are in {data}")
    test = slices.select_subjects(held)
    fake = translate_array(model, test.labels, test.images)
    model.eval()
    with torch.no_grad():
        mu, logvar = model.encode_style(torch.from_numpy(test.images[:, None]))
    mu_np, lv_np = mu.numpy(), logvar.numpy()
    kl = 0.5 * (mu_np**2 + np.exp(lv_np) - 1.0 - lv_np).sum(axis=1)

    blood = test.labels == 3
    keep = blood.sum(axis=(1, 2)) > MIN_BLOOD_PX
    real = np.array([test.images[i][blood[i]].mean() for i in np.flatnonzero(keep)])
    made = np.array([fake[i][blood[i]].mean() for i in np.flatnonzero(keep)])
    design = np.c_[mu_np[keep], np.ones(int(keep.sum()))]
    coef, *_ = np.linalg.lstsq(design, real, rcond=None)
    r2 = 1.0 - float(((real - design @ coef) ** 2).sum() / ((real - real.mean()) ** 2).sum())
    subject = test.subject[keep]
    centred = [np.zeros_like(real), np.zeros_like(made)]
    for s in np.unique(subject):
        at = subject == s
        centred[0][at] = real[at] - real[at].mean()
        centred[1][at] = made[at] - made[at].mean()
    corr_all, slope_all = _slope(real, made)
    corr_within, slope_within = _slope(centred[0], centred[1])
    real_means, fake_means = class_means(test.images, test.labels), class_means(fake, test.labels)
    rel = {c: (fake_means[c] - real_means[c]) / abs(real_means[c]) for c in (1, 2, 3)}
    interior = []
    for c, name in ((1, "RV"), (3, "LV")):
        inside = np.stack([ndimage.distance_transform_edt(m) for m in test.labels == c]) > INTERIOR_PX
        interior.append(f"{name} {test.images[inside].mean():+.3f} / {fake[inside].mean():+.3f}")
    perm = np.random.default_rng(0).permutation(len(test))
    swapped = translate_array(model, test.labels, test.images[perm]) > BRIGHT
    own_blood, ref_blood = np.isin(test.labels, (1, 3)), np.isin(test.labels[perm], (1, 3))
    only_ref, neither = swapped[ref_blood & ~own_blood].mean(), swapped[~own_blood & ~ref_blood].mean()
    return (
        f"{version}: KL {kl.mean():.1f} nats/slice; R2 LV blood mean from style {r2:.2f}\n"
        f"  LV blood per slice ({len(real)}): real {real.mean():+.3f} +- {real.std():.3f}, translated "
        f"{made.mean():+.3f} +- {made.std():.3f}\n"
        f"  corr / slope all slices {corr_all:.2f} / {slope_all:.2f}; within subjects "
        f"{corr_within:.2f} / {slope_within:.2f}\n"
        f"  pooled class means, translated vs real: RV {rel[1]:+.1%}, myocardium {rel[2]:+.1%}, "
        f"LV {rel[3]:+.1%}\n"
        f"  blood > {INTERIOR_PX} px inside its label, real / translated: {', '.join(interior)}\n"
        f"  another slice as reference: bright where only it has blood {only_ref:.3f}, where neither "
        f"{neither:.3f}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("versions", nargs="+")
    parser.add_argument("--model-root", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sys.stdout.write(f"held-out subjects of each card; LV blood slices with > {MIN_BLOOD_PX} pixels\n")
    for version in args.versions:
        sys.stdout.write(report(args.data, version, args.model_root))


if __name__ == "__main__":
    main()
