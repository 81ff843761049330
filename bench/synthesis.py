"""Synthesis throughput on this machine: subjects per minute (ED + ES, labels + images) for several n,
with a stage breakdown; the same work as a naive slice-at-a-time loop; and the pure batched forward
time of the two networks over the same slices (the floor). Each request is timed twice: cold (its
base subjects read from disk) and warm (the same request again, as a worker's next job finds them
cached); on a GPU the largest n is also timed with the CPU work not overlapped with the device's.
Prints a table and JSON.

.venv/bin/python bench/synthesis.py --data data/phantom --n 1 5 50
.venv/bin/python bench/synthesis.py --data data/phantom --device cuda --preset paper --n 1 10 100

``--model`` (default: the default models) times the shipped networks; ``--preset paper`` times
randomly initialised networks of that preset's size instead (speed does not depend on the weights;
the labels they make are noise, so only the timings mean anything). The class statistics and the
decoder's calibration are computed once before timing (cached artefacts in normal use). The floor
runs at the pipeline's own precisions (encode fp32, decode and translate at ``--precision``) and
batch sizes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cardiosynth.data.labels import Group
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.models.registry import load_model
from cardiosynth.models.spade import SpadeConfig, SpadeTranslator, spade_widths
from cardiosynth.models.vae import LabelVAE, VAEConfig, widths
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer, choose_bases, target_latents
from cardiosynth.synthesis.equalise import equalise_lv, extent_offsets, lv_extent, restore_lv, target_extent
from cardiosynth.synthesis.sampling import interpolate
from cardiosynth.synthesis.stages import decode_latents, encode_slices, translate_slices


def naive(synth: Synthesizer, request: SynthesisRequest) -> float:
    """The same method, one slice at a time through each network (how a straightforward port runs)."""
    started = time.perf_counter()
    vae, spade = synth.vae, synth.spade
    if spade is None:
        raise ValueError("needs a SPADE model")
    bases = choose_bases(sources.by_group(synth.refs, Group.NOR), request)
    for index, ref in enumerate(bases):
        base = sources.load(ref).processed
        for phase in request.phases:
            labels = base.ed_label if phase == "ED" else base.es_label
            images = base.ed_image if phase == "ED" else base.es_image
            latents = np.concatenate(
                [encode_slices(vae, labels[k : k + 1], 1, "fp32") for k in range(len(labels))]
            )
            stats = synth.class_stats(request.pathology, phase)
            rng = np.random.default_rng([request.seed, index])
            base_eq = equalise_lv(latents, labels, request.ns)  # the LV extent, as the engine
            nor = synth.class_stats(Group.NOR, phase) if request.interpolation == "shift" else None
            target = target_latents(request, stats, nor, base_eq, rng)
            # the engine's placement at severity 1: the base's ED extent moved by the class's offsets
            extent = target_extent(lv_extent(base.ed_label), extent_offsets(base.ed_label, labels),
                                   stats.extent_offset, 1.0, len(labels))  # fmt: skip
            z = restore_lv(interpolate(base_eq, target, 1.0), latents, extent)
            for k in range(len(labels)):
                lab = decode_latents(vae, z[k : k + 1], 1, synth.precision)
                translate_slices(spade, lab, images[k : k + 1], 1, synth.precision)
    _sync()
    return time.perf_counter() - started


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def floor(synth: Synthesizer, labels: np.ndarray, images: np.ndarray) -> float:
    """Pure batched forward passes over the same slices: encode, decode, translate (the pipeline's
    precisions and batch sizes)."""
    vae, spade = synth.vae, synth.spade
    if spade is None:
        raise ValueError("needs a SPADE model")
    _sync()
    started = time.perf_counter()
    latents = encode_slices(vae, labels, synth.batch_size, "fp32")
    decoded = decode_latents(vae, latents, synth.batch_size, synth.precision)
    translate_slices(spade, decoded, images, synth.batch_size, synth.precision)
    _sync()
    return time.perf_counter() - started


def random_models(preset: str) -> tuple[LabelVAE, SpadeTranslator]:
    """Networks of a preset's size with random weights (for timing only)."""
    w = widths(preset)
    vae = LabelVAE(VAEConfig(channels=w["channels"], fc_features=w["fc_features"]))
    return vae.eval(), SpadeTranslator(SpadeConfig(**spade_widths(preset))).eval()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 5, 50])
    parser.add_argument("--pathology", default="HCM")
    parser.add_argument("--model", default=DEFAULT_VERSION, help="shipped models (default %(default)s)")
    parser.add_argument(
        "--preset",
        choices=["cpu-small", "paper"],
        default=None,
        help="random networks of this size instead of --model (timing only)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("--naive-max", type=int, default=5, help="largest n timed with the naive loop")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--precision", default=None, help="fp32, bf16, fp16 (default: the device's)")
    parser.add_argument(
        "--soft-restore",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="restore labels from the decoder's probabilities (default; --no-soft-restore: from the labels)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.preset is not None:
        vae, spade = random_models(args.preset)
        label = f"random-{args.preset}"
    else:
        vae = load_model("vae", args.model).module
        spade = load_model("spade", args.model).module
        label = args.model
    if not isinstance(vae, LabelVAE) or not isinstance(spade, SpadeTranslator):
        raise SystemExit(f"model {args.model!r} is not a VAE + SPADE pair")
    synth = Synthesizer(vae, spade, args.data, model_versions={"vae": label}, device=args.device,
                        precision=args.precision, soft_restore=args.soft_restore)  # fmt: skip
    pathology = Group(args.pathology)
    for phase in ("ED", "ES"):
        synth.class_stats(pathology, phase)
    synth.decoder_calibration()  # a cached artefact too (fitted once per model and data set)
    if synth.device.type == "cuda":  # lazy CUDA init, cuDNN autotuning, batch-size probes: not timed
        synth.run(SynthesisRequest(pathology, n=2, seed=0))
    rows: list[dict[str, Any]] = []
    for n in args.n:
        request = SynthesisRequest(pathology, n=n, seed=0)
        synth.timings = {}
        _sync()
        started = time.perf_counter()
        subjects = synth.run(request)
        _sync()
        total = time.perf_counter() - started
        stages = dict(synth.timings)
        labels = np.concatenate([s.phases[1.0][ph].labels for s in subjects for ph in ("ED", "ES")])
        images = np.concatenate([s.base_stacks[ph][0] for s in subjects for ph in ("ED", "ES")])
        floor_s = floor(synth, labels, images)
        naive_s = naive(synth, request) if n <= args.naive_max else None
        # The same request again: a warm worker's next job (its base subjects read and cached).
        synth.timings = {}
        _sync()
        started = time.perf_counter()
        synth.run(request)
        _sync()
        warm_s = time.perf_counter() - started
        warm_stages = dict(synth.timings)
        serial_s = None
        if synth.device.type == "cuda" and n == max(args.n):  # what overlapping the CPU work gains
            _sync()
            started = time.perf_counter()
            list(synth.stream(synth.make_labels(request), overlap=False))
            _sync()
            serial_s = time.perf_counter() - started
        rows.append({
            "n": n,
            "slices": len(labels),
            "pipeline_s": total,
            "subjects_per_min": 60.0 * n / total,
            "subjects_per_s": n / total,
            "floor_s": floor_s,
            "pipeline_over_floor": total / floor_s,
            "naive_s": naive_s,
            "speedup_vs_naive": (naive_s / total) if naive_s else None,
            "stages_s": stages,
            "warm_s": warm_s,
            "warm_subjects_per_s": n / warm_s,
            "warm_over_floor": warm_s / floor_s,
            "warm_stages_s": warm_stages,
            "warm_no_overlap_s": serial_s,
        })  # fmt: skip
    print(f"{'n':>4} {'slices':>6} {'pipeline s':>10} {'subj/min':>9} {'floor s':>8} {'x floor':>8} "
          f"{'naive s':>8} {'speedup':>8} {'warm s':>7} {'warm x':>7}  stages (cold | warm)")  # fmt: skip
    for r in rows:
        naive_s = f"{r['naive_s']:8.2f}" if r["naive_s"] else f"{'-':>8}"
        speed = f"{r['speedup_vs_naive']:8.1f}" if r["speedup_vs_naive"] else f"{'-':>8}"
        stages = " ".join(f"{k}={v:.2f}" for k, v in r["stages_s"].items())
        warm = " ".join(f"{k}={v:.2f}" for k, v in r["warm_stages_s"].items())
        print(f"{r['n']:4d} {r['slices']:6d} {r['pipeline_s']:10.2f} {r['subjects_per_min']:9.1f} "
              f"{r['floor_s']:8.2f} {r['pipeline_over_floor']:8.2f} {naive_s} {speed} "
              f"{r['warm_s']:7.2f} {r['warm_over_floor']:7.2f}  {stages} | {warm}")  # fmt: skip
    from cardiosynth.device import describe

    device = {**describe(synth.device), "precision": synth.precision}
    params = {
        "vae": sum(p.numel() for p in vae.parameters()),
        "spade": sum(p.numel() for p in spade.parameters()),
    }
    result = {"device": device, "models": label, "parameters": params, "threads": torch.get_num_threads(),
              "soft_restore": synth.soft_restore, "rows": rows}  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
