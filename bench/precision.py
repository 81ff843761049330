"""Inference precision and speed of the two networks on a device.

``compare``: how much bf16 (and, on CUDA, fp16) autocast changes what the shipped models make, against
fp32 on the same device. The same synthesis request runs at each precision; the decoded label maps
are compared with the fp32 ones (Dice per class, pooled over every slice, and the lowest per-subject
Dice), and the fp32 labels are translated at each precision to compare the images (max and mean
absolute difference, images in [-1, 1]). Encoding is fp32 at every precision (see engine.FP32).

``throughput``: forward-only decode and translate of ``n`` subjects' slices with models of a preset's
size (random weights: speed does not depend on them), batch sizes chosen from free memory as the
service does, against the same slices one at a time; peak device memory.

    .venv/bin/python bench/precision.py compare --device cpu --out reports/precision-cpu
    .venv/bin/python bench/precision.py throughput --device cuda --preset paper --n 100 --out $OUT/tp

Both print a table and write ``precision.json`` / ``throughput.json`` and a ``.txt`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from cardiosynth.device import describe, free_memory, limit_memory, place, resolve_device, resolve_precision
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator, spade_widths
from cardiosynth.models.vae import LabelVAE, VAEConfig, widths
from cardiosynth.synthesis.stages import decode_latents, stage_batch_size, translate_slices

CLASSES = {1: "RV", 2: "MYO", 3: "LV"}


def dice(a: npt.NDArray[Any], b: npt.NDArray[Any], c: int) -> float:
    """Dice of class ``c`` between two label arrays; 1.0 when neither holds it."""
    x, y = a == c, b == c
    total = int(x.sum() + y.sum())
    return 1.0 if total == 0 else 2.0 * float((x & y).sum()) / total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(args: argparse.Namespace) -> dict[str, Any]:
    from cardiosynth.data.default import default_data
    from cardiosynth.data.labels import parse_group
    from cardiosynth.models.registry import load_model
    from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer

    device = resolve_device(args.device)
    precisions = ["bf16", "fp16"] if device.type == "cuda" else ["bf16"]
    vae = load_model("vae", args.model, args.model_root)
    spade = load_model("spade", args.model, args.model_root)
    data = args.data if args.data is not None else default_data()
    synth = Synthesizer(vae.module, spade.module, data, device=device, precision="fp32",  # type: ignore[arg-type]
                        model_versions={"vae": vae.version, "spade": spade.version})  # fmt: skip
    request = SynthesisRequest(pathology=parse_group(args.pathology), n=args.n, seed=args.seed)
    synth.class_stats(request.pathology, "ED")  # statistics first: not part of the timings
    synth.class_stats(request.pathology, "ES")
    rows: list[dict[str, Any]] = []
    reference = None
    reference_images = None
    for precision in ["fp32", *precisions]:
        synth.precision = precision  # type: ignore[assignment]
        synth.timings = {}
        batch = synth.make_labels(request)
        if reference is None:
            reference = batch
        images = synth.translate(reference)  # the fp32 labels, so images differ by precision alone
        if reference_images is None:
            reference_images = images
        bounds = np.cumsum([0, *(p[3] for p in batch.plan)])
        per_subject: dict[int, list[tuple[int, int]]] = {}
        for k, plan in enumerate(batch.plan):
            per_subject.setdefault(plan[0], []).append((int(bounds[k]), int(bounds[k + 1])))
        row: dict[str, Any] = {"precision": precision, "slices": len(batch.labels)}
        for c, name in CLASSES.items():
            row[f"dice_{name}"] = dice(batch.labels, reference.labels, c)
            row[f"min_subject_dice_{name}"] = min(
                dice(
                    np.concatenate([batch.labels[a:b] for a, b in spans]),
                    np.concatenate([reference.labels[a:b] for a, b in spans]),
                    c,
                )
                for spans in per_subject.values()
            )
        row["pixels_changed"] = float(np.mean(batch.labels != reference.labels))
        diff = np.abs(images - reference_images)
        row["image_max_abs_diff"] = float(diff.max())
        row["image_mean_abs_diff"] = float(diff.mean())
        row["decode_s"] = synth.timings.get("decode", 0.0)
        row["translate_s"] = synth.timings.get("translate", 0.0)
        rows.append(row)
    lines = [
        f"{'precision':>9} {'slices':>6} {'Dice RV':>8} {'Dice MYO':>8} {'Dice LV':>8} {'min subj':>8} "
        f"{'px chg':>8} {'img max':>8} {'img mean':>9} {'decode s':>8} {'transl s':>8}"
    ]
    for r in rows:
        low = min(r[f"min_subject_dice_{n}"] for n in CLASSES.values())
        lines.append(
            f"{r['precision']:>9} {r['slices']:6d} {r['dice_RV']:8.4f} {r['dice_MYO']:8.4f} "
            f"{r['dice_LV']:8.4f} {low:8.4f} {r['pixels_changed']:8.5f} {r['image_max_abs_diff']:8.4f} "
            f"{r['image_mean_abs_diff']:9.5f} {r['decode_s']:8.2f} {r['translate_s']:8.2f}"
        )
    return {
        "what": "precision",
        "device": describe(device),
        "models": {"vae": vae.version, "spade": spade.version, "preset": vae.card.get("preset")},
        "data": Path(data).name,
        "request": {"pathology": args.pathology, "n": args.n, "seed": args.seed},
        "rows": rows,
        "table": lines,
    }


def _models(preset: str, device: torch.device) -> tuple[LabelVAE, SpadeTranslator]:
    torch.manual_seed(0)
    w = widths(preset)
    vae = LabelVAE(VAEConfig(channels=w["channels"], fc_features=w["fc_features"]))
    spade = SpadeTranslator(SpadeConfig(**spade_widths(preset)))
    return place(vae, device).eval(), place(spade, device).eval()


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    if args.memory_limit_gib is not None:  # e.g. 24: a 24 GB card simulated on a larger one
        limit_memory(device, int(args.memory_limit_gib * 2**30))
    vae, spade = _models(args.preset, device)
    params = {
        "vae": sum(p.numel() for p in vae.parameters()),
        "spade": sum(p.numel() for p in spade.parameters()),
    }
    n_slices = args.n * args.slices_per_subject
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(n_slices, vae.config.latent_dim)).astype(np.float32)
    size = vae.config.image_size
    references = rng.uniform(-1, 1, (n_slices, size, size)).astype(np.float32)
    batch = {
        "decode": stage_batch_size(vae, "decode", precision, args.batch_size),
        "translate": stage_batch_size(spade, "translate", precision, args.batch_size),
    }
    # Warm-up (cuDNN autotuning, allocator): one batch of each, not timed.
    warm = decode_latents(vae, latents[: batch["decode"]], batch["decode"], precision)
    translate_slices(spade, warm[: batch["translate"]], references[: len(warm[: batch["translate"]])],
                     batch["translate"], precision)  # fmt: skip
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    started = time.perf_counter()
    labels = decode_latents(vae, latents, batch["decode"], precision)
    _sync(device)
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    translate_slices(spade, labels, references, batch["translate"], precision)
    _sync(device)
    translate_s = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    # The same work one slice at a time, on a sample (the per-slice cost times n).
    sample = min(args.loop_sample, n_slices)
    started = time.perf_counter()
    for k in range(sample):
        lab = decode_latents(vae, latents[k : k + 1], 1, precision)
        translate_slices(spade, lab, references[k : k + 1], 1, precision)
    _sync(device)
    loop_s = (time.perf_counter() - started) / sample * n_slices
    batched_s = decode_s + translate_s
    memory = free_memory(device)
    result = {
        "what": "throughput",
        "device": describe(device),
        "precision": precision,
        "preset": args.preset,
        "memory_limit_gib": args.memory_limit_gib,
        "parameters": params,
        "n_subjects": args.n,
        "slices": n_slices,
        "batch_size": batch,
        "decode_s": decode_s,
        "translate_s": translate_s,
        "batched_s": batched_s,
        "slices_per_s": n_slices / batched_s,
        "subjects_per_s": args.n / batched_s,
        "slice_loop_s_estimated": loop_s,
        "loop_sample": sample,
        "speedup_vs_slice_loop": loop_s / batched_s,
        "peak_memory_mib": peak // 2**20 if peak is not None else None,
        "free_memory_mib_after": memory[0] // 2**20 if memory else None,
    }
    result["table"] = [
        f"{args.preset} models ({params['vae'] / 1e6:.1f} M + {params['spade'] / 1e6:.1f} M parameters) on "
        f"{result['device']['device']} ({result['device']['name']}), {precision}"
        + (f", limited to {args.memory_limit_gib} GiB" if args.memory_limit_gib else ""),
        f"n = {args.n} subjects = {n_slices} slices; batch decode {batch['decode']}, "
        f"translate {batch['translate']}",
        f"decode {decode_s:.2f} s, translate {translate_s:.2f} s: {n_slices / batched_s:.1f} slices/s, "
        f"{args.n / batched_s:.2f} subjects/s",
        f"slice at a time (from {sample} slices): {loop_s:.1f} s; "
        f"batched is {loop_s / batched_s:.1f} x faster",
        f"peak memory {result['peak_memory_mib']} MiB" if peak is not None else "peak memory: (CPU)",
    ]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("compare", help="bf16/fp16 against fp32: label Dice, image difference")
    c.add_argument("--device", default="auto")
    c.add_argument("--model", default=DEFAULT_VERSION)
    c.add_argument("--model-root", type=Path, default=None)
    c.add_argument("--data", type=Path, default=None, help="default: the default phantom")
    c.add_argument("--pathology", default="HCM")
    c.add_argument("-n", "--n", type=int, default=5, help="subjects (ED + ES)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("throughput", help="batched decode + translate vs slice at a time")
    t.add_argument("--device", default="auto")
    t.add_argument("--precision", default=None, help="fp32, bf16, fp16 (default: the device's)")
    t.add_argument("--preset", default="paper", choices=["cpu-small", "paper"])
    t.add_argument("-n", "--n", type=int, default=100, help="subjects")
    t.add_argument("--slices-per-subject", type=int, default=22, help="ED + ES slices (phantom: ~22)")
    t.add_argument("--batch-size", type=int, default=None, help="default: from free memory")
    t.add_argument("--loop-sample", type=int, default=32, help="slices timed one at a time")
    t.add_argument("--memory-limit-gib", type=float, default=None,
                   help="use at most this much device memory (simulates a smaller card)")  # fmt: skip
    t.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = compare(args) if args.what == "compare" else throughput(args)
    result["command"] = "python bench/precision.py " + " ".join(
        shlex.quote(a) for a in (argv or sys.argv[1:])
    )
    args.out.mkdir(parents=True, exist_ok=True)
    name = str(result["what"])  # precision.json / throughput.json
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    text = "\n".join([f"$ {result['command']}", *result["table"]]) + "\n"
    (args.out / f"{name}.txt").write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
