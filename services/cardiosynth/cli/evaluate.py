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
        held_out_root=args.held_out,
    )
    _echo(synthesis_markdown(report))
    _echo(f"report: {args.out}/synthesis.json, synthesis.md, precision_recall.png, identity_fidelity.png")
    return 0


def _utility_command(args: argparse.Namespace) -> str:
    """The command line that reproduces a run, from the parsed arguments (not ``sys.argv``, which
    is the test runner's when ``main`` is called from Python)."""
    import shlex

    words = ["cardiosynth", "evaluate", "utility"]
    names = "data out preset seeds iterations image_size synthetic low_data keep_missing protocols groups"
    for name in (*names.split(), "arms", "vae_version", "spade_version", "threads"):
        value = getattr(args, name)
        if isinstance(value, Path) and value.is_relative_to(Path.home()):
            value = "~/" + str(value.relative_to(Path.home()))  # no one machine's home in a report
        if value is not None:
            words += ["--" + name.replace("_", "-"), str(value)]
    # "~/..." stays unquoted so that a shell still expands it.
    return " ".join(
        w if w.startswith("~/") and shlex.quote(w[2:]) == w[2:] else shlex.quote(w) for w in words
    )


def cmd_evaluate_utility(args: argparse.Namespace) -> int:
    import torch

    from cardiosynth.data.labels import parse_group
    from cardiosynth.evaluation.utility import preset, run_utility
    from cardiosynth.evaluation.utility_report import utility_markdown, write_report
    from cardiosynth.models.registry import load_model

    # A bad value raises ValueError naming it; main() turns that into one error line and exit 2.
    cfg = preset(
        args.preset,
        seeds=tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None,
        iterations=args.iterations,
        image_size=args.image_size,
        synthetic_per_group=args.synthetic,
        low_data=args.low_data,
        keep_missing=args.keep_missing,
        protocols=tuple(args.protocols.split(",")) if args.protocols else None,
        missing_groups=tuple(parse_group(g) for g in args.groups.split(",")) if args.groups else None,
        arms=tuple(args.arms.split(",")) if args.arms else None,
    )
    if args.threads is not None:
        # A loaded machine: one thread per process avoids OpenMP threads spinning against each other.
        torch.set_num_threads(args.threads)
    vae = load_model("vae", args.vae_version, args.model_root)
    spade = load_model("spade", args.spade_version, args.model_root)
    data = args.data if args.data is not None else _ensure_default_data()

    def finish(report: dict[str, Any]) -> dict[str, Any]:
        report["preset"] = args.preset
        # The folder name, not the machine's path, goes into the report.
        report["data"] = f"`{data.name}`" + (" (the default phantom)" if args.data is None else "")
        report["command"] = _utility_command(args)
        return report

    previous = None
    if args.resume and (args.out / "report.json").is_file():
        import json

        previous = json.loads((args.out / "report.json").read_text(encoding="utf-8"))

    def save(partial: dict[str, Any]) -> None:
        write_report(finish(partial), args.out)

    report = run_utility(
        vae.module,  # type: ignore[arg-type]
        spade.module,  # type: ignore[arg-type]
        data,
        cfg,
        model_versions={"vae": vae.version, "spade": spade.version},
        cache_dir=args.cache,
        checkpoint=save,  # after each arm: a run cut short leaves what it finished
        previous=previous,
    )
    finish(report)
    paths = write_report(report, args.out)
    _echo(utility_markdown(report))
    _echo("report: " + ", ".join(str(p) for p in paths))
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
    q.add_argument(
        "--held-out",
        type=Path,
        default=None,
        help="an external held-out cohort (ACDC layout): all of --data trains, every comparison is "
        "against these subjects (--train-fraction is then not used)",
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

    q = ev.add_parser(
        "utility",
        help="downstream segmentation benchmark: a UNet trained on real, real + synthetic, real + elastic, "
        "real + class-mean and synthetic data, tested on held-out real subjects",
    )
    q.add_argument("--data", type=Path, default=None, help="ACDC-layout data (default: the phantom)")
    q.add_argument("--out", type=Path, required=True, help="report folder (report.json, report.md, dice.png)")
    q.add_argument("--preset", choices=("small", "paper"), default="small",
                   help="small: CPU, under 30 min; paper: GPU-sized (default small)")  # fmt: skip
    q.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the preset's)")
    q.add_argument("--iterations", type=_positive_int, default=None, help="optimiser steps per arm")
    q.add_argument("--image-size", type=_positive_int, default=None, help="slice size the UNet sees")
    q.add_argument("--synthetic", type=_positive_int, default=None, help="subjects added per group")
    q.add_argument("--low-data", type=_positive_int, default=None, help="real subjects per group in (b)")
    q.add_argument("--keep-missing", type=int, default=None,
                   help="real subjects of the missing group kept in protocol (c) (default 0)")  # fmt: skip
    q.add_argument("--protocols", default=None, help="comma-separated: full,low_data,missing (default all)")
    q.add_argument("--groups", default=None, help="missing groups for protocol (c) (default DCM,HCM,MINF,RV)")
    q.add_argument(
        "--arms",
        default=None,
        help="comma-separated arms (default: real, real+synthetic, real+elastic, real+class_mean, "
        "synthetic; add real+real for the ceiling: real subjects of the group instead)",
    )
    q.add_argument("--vae-version", default=DEFAULT_VERSION)
    q.add_argument("--spade-version", default=DEFAULT_VERSION)
    q.add_argument("--model-root", type=Path, default=None, help="registry root (default: shipped models)")
    q.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    q.add_argument("--resume", action="store_true", help="take over the finished runs of --out's report.json")
    q.add_argument("--cache", type=Path, default=_default_cache())
    q.set_defaults(func=cmd_evaluate_utility)
