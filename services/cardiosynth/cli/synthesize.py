"""``cardiosynth synthesize``: synthetic subjects of a chosen pathology (labels + images)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from cardiosynth.cli.args import _positive_int, _seed, _severity, add_device_options, precision_arg
from cardiosynth.cli.common import _default_cache, _echo, _synthesizer
from cardiosynth.models.catalog import DEFAULT_VERSION
from cardiosynth.synthesis.modes import (
    CORRELATION_MODES,
    DEFAULT_CORRELATION,
    DEFAULT_INTERPOLATION,
    INTERPOLATIONS,
)


def cmd_synthesize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cardiosynth.data.labels import parse_group
    from cardiosynth.synthesis.engine import PHASES, SynthesisRequest
    from cardiosynth.synthesis.modes import check_interpolation, check_mode
    from cardiosynth.synthesis.output import format_table, write_subject

    severities = SynthesisRequest.trajectory(args.trajectory) if args.trajectory else (args.severity,)
    request = SynthesisRequest(
        pathology=parse_group(args.pathology),
        n=args.n,
        seed=args.seed,
        severities=severities,
        correlation=check_mode(args.correlation),
        interpolation=check_interpolation(args.interpolation),
        phases=tuple(args.phases.split(",")) if args.phases else PHASES,
        base_subjects=tuple(args.base.split(",")) if args.base else (),
        territory=args.territory,
    )
    existing = [
        p for p in (args.out / f"{request.pathology.value}_{i:03d}" for i in range(request.n)) if p.exists()
    ]
    if existing and not args.overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass --overwrite to replace outputs")
    synthesizer, models = _synthesizer(
        args.model, args.model, args.model_root, args.data, None if args.no_cache else args.cache,
        device=args.device, precision=precision_arg(args.precision),
    )  # fmt: skip
    started = time.perf_counter()
    with tqdm(total=5, desc="synthesize", disable=args.quiet) as bar:

        def progress(stage: str, done: int, total: int) -> None:
            bar.set_postfix(stage=stage)
            bar.update(1)

        subjects = synthesizer.run(request, progress)
    written = []
    for subject in subjects:
        written.append(write_subject(subject, request, args.out, models=models, overwrite=args.overwrite,
                                     preview=not args.no_preview))  # fmt: skip
    elapsed = time.perf_counter() - started
    _echo(f"wrote {len(written)} {request.pathology.value} subjects to {args.out} in {elapsed:.1f} s")
    _echo(format_table(subjects, max(request.severities)))
    return 0


def add_synthesize_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("synthesize", help="synthetic subjects of a chosen pathology (labels + images)")
    p.add_argument("--pathology", required=True, help="NOR, DCM, HCM, MINF or RV")
    p.add_argument("-n", type=_positive_int, default=1, help="number of synthetic subjects (1-100)")
    p.add_argument("--seed", type=_seed, default=0)
    sev = p.add_mutually_exclusive_group()
    sev.add_argument("--severity", type=_severity, default=1.0, help="in (0, 1]; default 1.0")
    sev.add_argument("--trajectory", type=_positive_int, default=None, metavar="K",
                     help="K severities 1/K, 2/K, ..., 1")  # fmt: skip
    p.add_argument("--correlation", default=DEFAULT_CORRELATION, choices=CORRELATION_MODES,
                   help=f"correlation of the sampled latents (default {DEFAULT_CORRELATION})")  # fmt: skip
    p.add_argument("--interpolation", default=DEFAULT_INTERPOLATION, choices=INTERPOLATIONS,
                   help="sample: towards a class sample (the paper's, default); shift: the base moved by "
                   "the class shift, keeping its identity")  # fmt: skip
    p.add_argument("--phases", default=None, help="ED,ES (default both)")
    p.add_argument("--base", default=None, help="comma-separated NOR subject ids to start from")
    p.add_argument("--territory", default=None, choices=["LAD", "LCx", "RCA"],
                   help="MINF only: infarct territory (default: drawn per subject with the data's "
                   "territory frequencies)")  # fmt: skip
    p.add_argument(
        "--data", type=Path, default=None, help="ACDC-layout data (default: the phantom, made once)"
    )
    p.add_argument("--model", default=DEFAULT_VERSION, help="model version (VAE and SPADE)")
    p.add_argument("--model-root", type=Path, default=None)
    p.add_argument("--cache", type=Path, default=_default_cache(), help="class-statistics cache")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--no-preview", action="store_true")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    add_device_options(p, "autocast of decode and translate")
    p.set_defaults(func=cmd_synthesize)
