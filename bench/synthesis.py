"""Synthesis throughput on this machine: subjects per minute (ED + ES, labels + images) for several n,
with a stage breakdown; the same work as a naive slice-at-a-time loop; and the pure batched forward
time of the two networks over the same slices (the floor). Prints a table and JSON.

.venv/bin/python bench/synthesis.py --data data/phantom --n 1 5 50

Class statistics are computed once before timing (they are a cached artefact in normal use).
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
from cardiosynth.models.registry import load_model
from cardiosynth.models.spade import SpadeTranslator
from cardiosynth.models.vae import LabelVAE
from cardiosynth.synthesis import sources
from cardiosynth.synthesis.engine import SynthesisRequest, Synthesizer, choose_bases, target_latents
from cardiosynth.synthesis.equalise import equalise, resample_slices
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
            latents = np.concatenate([encode_slices(vae, labels[k : k + 1]) for k in range(len(labels))])
            stats = synth.class_stats(request.pathology, phase)
            rng = np.random.default_rng([request.seed, index])
            base_eq = equalise(latents, request.ns)
            nor = synth.class_stats(Group.NOR, phase) if request.interpolation == "shift" else None
            target = target_latents(request, stats, nor, base_eq, rng)
            z = resample_slices(interpolate(base_eq, target, 1.0), len(labels))
            for k in range(len(labels)):
                lab = decode_latents(vae, z[k : k + 1])
                translate_slices(spade, lab, images[k : k + 1])
    return time.perf_counter() - started


def floor(vae: LabelVAE, spade: SpadeTranslator, labels: np.ndarray, images: np.ndarray) -> float:
    """Pure batched forward passes over the same slices: encode, decode, translate."""
    started = time.perf_counter()
    latents = encode_slices(vae, labels)
    decoded = decode_latents(vae, latents)
    translate_slices(spade, decoded, images)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 5, 50])
    parser.add_argument("--pathology", default="HCM")
    parser.add_argument("--model", default="phantom-v1")
    parser.add_argument("--naive-max", type=int, default=5, help="largest n timed with the naive loop")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--precision", default=None, help="fp32, bf16, fp16 (default: the device's)")
    args = parser.parse_args()
    torch.manual_seed(0)
    vae = load_model("vae", args.model).module
    spade = load_model("spade", args.model).module
    if not isinstance(vae, LabelVAE) or not isinstance(spade, SpadeTranslator):
        raise SystemExit(f"model {args.model!r} is not a VAE + SPADE pair")
    synth = Synthesizer(vae, spade, args.data, model_versions={"vae": args.model}, device=args.device,
                        precision=args.precision)  # fmt: skip
    pathology = Group(args.pathology)
    for phase in ("ED", "ES"):
        synth.class_stats(pathology, phase)
    rows: list[dict[str, Any]] = []
    for n in args.n:
        request = SynthesisRequest(pathology, n=n, seed=0)
        synth.timings = {}
        started = time.perf_counter()
        subjects = synth.run(request)
        total = time.perf_counter() - started
        stages = dict(synth.timings)
        labels = np.concatenate([s.phases[1.0][ph].labels for s in subjects for ph in ("ED", "ES")])
        images = np.concatenate([s.base_stacks[ph][0] for s in subjects for ph in ("ED", "ES")])
        floor_s = floor(vae, spade, labels, images)
        naive_s = naive(synth, request) if n <= args.naive_max else None
        rows.append({
            "n": n,
            "slices": len(labels),
            "pipeline_s": total,
            "subjects_per_min": 60.0 * n / total,
            "floor_s": floor_s,
            "pipeline_over_floor": total / floor_s,
            "naive_s": naive_s,
            "speedup_vs_naive": (naive_s / total) if naive_s else None,
            "stages_s": stages,
        })  # fmt: skip
    print(f"{'n':>4} {'slices':>6} {'pipeline s':>10} {'subj/min':>9} {'floor s':>8} {'x floor':>8} "
          f"{'naive s':>8} {'speedup':>8}  stages")  # fmt: skip
    for r in rows:
        naive_s = f"{r['naive_s']:8.1f}" if r["naive_s"] else f"{'-':>8}"
        speed = f"{r['speedup_vs_naive']:8.1f}" if r["speedup_vs_naive"] else f"{'-':>8}"
        stages = " ".join(f"{k}={v:.1f}" for k, v in r["stages_s"].items())
        print(f"{r['n']:4d} {r['slices']:6d} {r['pipeline_s']:10.1f} {r['subjects_per_min']:9.1f} "
              f"{r['floor_s']:8.1f} {r['pipeline_over_floor']:8.2f} {naive_s} {speed}  {stages}")  # fmt: skip
    from cardiosynth.device import describe

    device = {**describe(synth.device), "precision": synth.precision}
    print(json.dumps({"device": device, "threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
