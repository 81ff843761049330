"""The written image around the synthetic heart: the whole 128 x 128 crop composited into the base's
own image (the earlier way) against only the heart's neighbourhood (``composite_image(...,
region=heart)``, the engine's way now; heart = the output's labels and the base's own, foreground).

Per class, default request (``joint``/``sample``, severity 1), shipped models, N subjects, ED and ES,
every slice; inside the crop (where its ramp is 1):

- synthetic share: the mean blending weight of the translator's image (1 for the crop composite);
- background texture: the Laplacian SD of the written image over its background voxels (background
  in the output and in the base), divided by the base image's own over the same voxels: the
  translator paints the background label smoother than a real image is, so below 1 is the smoother
  patch around the heart; per stack, then the median;
- near the heart: the same ratio within 18 mm of the heart (where both composites are synthetic).

    .venv/bin/python reports/composite/heart_composite.py DATA N OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from cardiosynth.data.labels import Group
from cardiosynth.data.preprocess import composite_image, crop_weight, heart_weight
from cardiosynth.models.registry import load_model
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

data, n, out_dir = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
out_dir.mkdir(parents=True, exist_ok=True)
version = "phantom-v2c"
synth = Synthesizer(
    load_model("vae", version).module, load_model("spade", version).module, data,
    model_versions={"vae": version, "spade": version},
)  # fmt: skip


def lap_sd(image: np.ndarray, mask: np.ndarray) -> float:
    """SD of the in-plane Laplacian over ``mask`` (slice by slice: no through-plane term)."""
    slices = [ndimage.laplace(image[:, :, k].astype(np.float64)) for k in range(image.shape[2])]
    lap = np.stack(slices, axis=2)
    return float(lap[mask].std()) if mask.sum() > 50 else float("nan")


rows, examples = [], []
for cls in (Group.DCM, Group.HCM, Group.MINF, Group.NOR, Group.RV):
    batch = synth.make_labels(SynthesisRequest(cls, n=n, seed=0))
    subjects = synth.assemble(batch, synth.translate(batch))
    share, bg_crop, bg_heart, near = [], [], [], []
    for s in subjects:
        g = s.geometry
        inside = (crop_weight(g) == 1)[:, :, None]
        for phase in ("ED", "ES"):
            out = s.phases[1.0][phase]
            base_image = s.base.ed_image if phase == "ED" else s.base.es_image
            own = s.base.ed_label if phase == "ED" else s.base.es_label
            window = synth._base(synth._ref(s.base.subject_id)).processed.phase(phase).window
            heart = (out.native_labels > 0) | (own > 0)
            whole = composite_image(out.images, g, base_image, window)
            w = heart_weight(heart, g.native_spacing)
            inside3 = np.broadcast_to(inside, heart.shape)
            share.append(float(w[inside3].mean()))
            background = inside3 & ~heart
            floor = lap_sd(base_image, background)
            bg_crop.append(lap_sd(whole, background) / floor)
            bg_heart.append(lap_sd(out.native_image, background) / floor)
            ring = background & (w > 0)
            near.append(lap_sd(out.native_image, ring) / lap_sd(base_image, ring))
            shown = cls in (Group.DCM, Group.HCM, Group.RV) and s is subjects[0]
            if phase == "ED" and shown:
                k = int(np.argmax(heart.sum(axis=(0, 1))))
                xs, ys = np.nonzero(heart[:, :, k])
                box = (xs.min() - 30, xs.max() + 30, ys.min() - 30, ys.max() + 30)  # the seam and beyond
                views = (base_image[:, :, k], whole[:, :, k], out.native_image[:, :, k])
                examples.append((cls.value, *views, box))
    rows.append((cls.value, np.mean(share), np.median(bg_crop), np.median(bg_heart), np.nanmedian(near)))
    sys.stdout.flush()

lines = [
    f"{n} subjects per class, ED + ES, shipped models ({version}), data {data.name}, seed 0",
    "",
    "| class | synthetic share of the crop: crop / heart composite"
    " | background Laplacian SD vs base: crop / heart composite | within 18 mm of the heart |",
    "|---|---|---|---|",
]
for cls, sh, bc, bh, nr in rows:
    lines.append(f"| {cls} | 1.00 / {sh:.2f} | {bc:.2f} / {bh:.2f} | {nr:.2f} |")
(out_dir / "heart_composite.txt").write_text("\n".join(lines) + "\n")
sys.stdout.write("\n".join(lines) + "\n")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

for name, zoom in (("heart_composite.png", False), ("heart_composite_zoom.png", True)):
    fig, axes = plt.subplots(len(examples), 3, figsize=(10.5, 3.6 * len(examples)))
    for row, (cls, base, whole, heart, box) in zip(axes, examples, strict=True):
        lo, hi = np.percentile(base, (1, 99))
        titles = ("base (real)", "crop composite (before)", "heart composite (now)")
        for ax, img, title in zip(row, (base, whole, heart), titles, strict=True):
            view = img[max(box[0], 0) : box[1], max(box[2], 0) : box[3]] if zoom else img
            ax.imshow(view.T, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest")
            ax.set_title(f"{cls}: {title}", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=90)
    plt.close(fig)
