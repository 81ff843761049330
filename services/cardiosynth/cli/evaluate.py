"""``cardiosynth evaluate models`` and ``cardiosynth evaluate synthesis``: evaluation reports."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cardiosynth.cli.args import _positive_float, _positive_int, _seed, add_device_options
from cardiosynth.cli.common import _default_cache, _echo, _ensure_default_data
from cardiosynth.models.catalog import DEFAULT_VERSION


def cmd_evaluate_models(args: argparse.Namespace) -> int:
    from cardiosynth.evaluation.models import ModelRefs, evaluate_models, report_markdown, write_report
    from cardiosynth.models.registry import update_card

    refs = ModelRefs(args.vae_version, args.spade_version, args.model_root, args.vae_dir, args.spade_dir,
                     device=args.device)  # fmt: skip
    report = evaluate_models(
        args.data, refs, segmenter_epochs=args.segmenter_epochs, seed=args.seed, show_progress=not args.quiet
    )
    json_path, md_path = write_report(report, args.out)
    _echo(report_markdown(report))
    _echo(f"report: {json_path} and {md_path}")
    if args.update_cards:
        vae, spade = refs.load()
        figures = report["figures"]
        update_card(vae.path, metrics={k: v for k, v in figures.items() if k.startswith("vae_")})
        update_card(spade.path, metrics={k: v for k, v in figures.items() if not k.startswith("vae_")})
        _echo(f"updated cards: {vae.path} {spade.path}")
    return 0


def cmd_evaluate_synthesis(args: argparse.Namespace) -> int:
    from cardiosynth.data.labels import parse_group
    from cardiosynth.evaluation.synthesis import GROUPS, evaluate_synthesis, synthesis_markdown
    from cardiosynth.models.registry import load_spade, load_vae

    vae = load_vae(args.model, root=args.model_root)
    spade = load_spade(args.model, root=args.model_root) if args.images else None
    from cardiosynth.device import place

    place(vae.module, args.device)  # once: every stage of the evaluation follows the model's device
    if spade is not None:
        place(spade.module, args.device)
    data = args.data if args.data is not None else _ensure_default_data()
    groups = tuple(parse_group(g) for g in args.groups.split(",")) if args.groups else GROUPS
    report = evaluate_synthesis(
        vae.module,
        data,
        args.out,
        model_version=vae.version,
        n=args.n,
        trajectory_n=args.trajectories,
        trajectory_steps=args.steps,
        seed=args.seed,
        train_fraction=args.train_fraction,
        k=args.k,
        groups=groups,
        cross=args.cross,
        modes=args.modes.split(",") if args.modes else None,
        cache_dir=args.cache,
        spade=spade.module if spade is not None else None,
    )
    _echo(synthesis_markdown(report))
    _echo(f"report: {args.out}/synthesis.json, synthesis.md, precision_recall.png, identity_fidelity.png")
    return 0


def add_evaluate_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("evaluate", help="evaluation reports")
    ev = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = ev.add_parser("models", help="VAE reconstruction Dice, SPADE label fidelity and intensities")
    q.add_argument("--data", type=Path, required=True, help="ACDC-layout data the models were trained on")
    q.add_argument("--out", type=Path, required=True, help="report folder (models.json, models.md)")
    q.add_argument("--vae-version", default=DEFAULT_VERSION)
    q.add_argument("--spade-version", default=DEFAULT_VERSION)
    q.add_argument("--model-root", type=Path, default=None, help="registry root (default: shipped models)")
    q.add_argument("--vae-dir", type=Path, default=None, help="a VAE model directory instead of the registry")
    q.add_argument(
        "--spade-dir", type=Path, default=None, help="a SPADE model directory instead of the registry"
    )
    q.add_argument("--segmenter-epochs", type=_positive_int, default=4)
    q.add_argument("--seed", type=_seed, default=0)
    q.add_argument("--update-cards", action="store_true", help="write the figures into the model cards")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_options(q, "autocast of the VAE reconstructions and SPADE translations")
    q.set_defaults(func=cmd_evaluate_models)

    q = ev.add_parser(
        "synthesis",
        help="precision/recall, normalised W1, fidelity, topology, memorisation, identity vs severity: "
        "method and baselines against held-out subjects",
    )
    q.add_argument("--data", type=Path, default=None, help="ACDC-layout data (default: the phantom)")
    q.add_argument("--out", type=Path, required=True, help="report folder")
    q.add_argument("--model", default=DEFAULT_VERSION)
    q.add_argument("--model-root", type=Path, default=None)
    q.add_argument(
        "-n", type=_positive_int, default=20, help="synthetic subjects per class and row (default 20)"
    )
    q.add_argument("--trajectories", type=_positive_int, default=10, help="trajectories per class and family")
    q.add_argument("--steps", type=_positive_int, default=5, help="severities per trajectory (default 5)")
    q.add_argument("--seed", type=_seed, default=0)
    q.add_argument(
        "--train-fraction",
        type=_positive_float,
        default=0.6,
        help="share of each group for the class statistics; the rest is held out (default 0.6)",
    )
    q.add_argument("-k", type=_positive_int, default=3, help="neighbours for precision / recall (default 3)")
    q.add_argument("--groups", default=None, help="comma-separated classes (default: DCM,HCM,MINF,NOR,RV)")
    q.add_argument(
        "--cross", action="store_true", help="every correlation mode with every interpolation family"
    )
    q.add_argument("--modes", default=None, help="comma-separated correlation modes (default: every mode)")
    q.add_argument(
        "--images", action="store_true", help="also image realism (C2ST, texture; needs SPADE, slower)"
    )
    q.add_argument("--cache", type=Path, default=_default_cache())
    add_device_options(q, "autocast of decode and translate")
    q.set_defaults(func=cmd_evaluate_synthesis)
