"""``cardiosynth dataset build`` and ``cardiosynth dataset export`` (the command group's parser and
handlers; ``cardiosynth.cli`` adds them with :func:`add_dataset_commands`)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("cardiosynth")


def cmd_dataset_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cardiosynth.cli import _echo
    from cardiosynth.cli.common import _synthesizer
    from cardiosynth.export.atomic import check_target
    from cardiosynth.export.build import build_dataset
    from cardiosynth.export.spec import load_spec

    spec = load_spec(args.spec)  # a bad spec fails here, before models or data are touched
    check_target(args.out, args.overwrite)
    synthesizer, models = _synthesizer(
        spec.models.vae, spec.models.spade, args.model_root, args.data, None if args.no_cache else args.cache
    )
    started = time.perf_counter()
    with tqdm(total=spec.total_subjects, desc="dataset", unit="subject", disable=args.quiet) as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        out = build_dataset(
            spec,
            args.out,
            synthesizer,
            models=models,
            spec_text=args.spec.read_text(encoding="utf-8"),
            overwrite=args.overwrite,
            progress=progress,
        )
    from cardiosynth.export.build import read_card

    card = read_card(out)
    _echo(
        f"built {card['made']['synthetic']} synthetic subjects"
        f" (+{card['made']['real_included']} real) into {out} in {time.perf_counter() - started:.1f} s"
    )
    for asked, made in zip(card["requested"], card["made"]["groups"], strict=True):
        _echo(f"  {asked['pathology']:5s} severity {asked['severity']}: {made['n']}/{asked['n']}")
    _echo(f"card: {out / 'README.md'}, {out / 'dataset.json'}; plot: {out / 'biomarkers.png'}")
    return 0


def cmd_dataset_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cardiosynth.cli import _echo
    from cardiosynth.export.cases import collect_cases

    cases = collect_cases(args.source, args.include_real)
    if args.format == "nnunet":
        from cardiosynth.export.nnunet import export_nnunet

        with tqdm(total=len(cases), desc="nnunet", unit="case", disable=args.quiet) as bar:

            def progress(done: int, total: int) -> None:
                bar.update(done - bar.n)

            target = export_nnunet(
                cases,
                args.out,
                args.id,
                args.name,
                n_folds=args.folds,
                seed=args.seed,
                overwrite=args.overwrite,
                progress=progress,
            )
        _echo(f"nnU-Net v2 raw dataset: {target}")
        _echo(
            f"  then: nnUNetv2_plan_and_preprocess -d {args.id} --verify_dataset_integrity (it copies"
            " splits_final.json into nnUNet_preprocessed, so folds keep each base with its descendants)"
        )
    else:
        from cardiosynth.export.monai_datalist import export_monai

        path = export_monai(
            cases,
            args.out,
            fold=args.fold,
            n_folds=args.folds,
            seed=args.seed,
            name=args.name,
            overwrite=args.overwrite,
        )
        _echo(f"MONAI datalist: {path} (validation fold {args.fold} of {args.folds})")
    training = [c for c in cases if not c.test]
    _echo(
        f"  {len(training)} training cases: {sum(c.source == 'synthetic' for c in training)} synthetic, "
        f"{sum(c.source == 'real' for c in training)} real; {len(cases) - len(training)} test cases"
    )
    return 0


def add_dataset_commands(sub: Any) -> None:
    """Add ``dataset build`` and ``dataset export`` to the top-level subparsers ``sub``."""
    from cardiosynth.cli import _default_cache, _positive_int, _seed

    p = sub.add_parser("dataset", help="build a training dataset from a spec; export it for nnU-Net or MONAI")
    ds = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = ds.add_parser("build", help="synthetic subjects (and the real ones) from a YAML spec, with a card")
    q.add_argument("--spec", type=Path, required=True, help="dataset spec (YAML)")
    q.add_argument("--out", type=Path, required=True, help="dataset folder (made atomically)")
    q.add_argument("--data", type=Path, default=None, help="ACDC-layout real data (default: the phantom)")
    q.add_argument("--model-root", type=Path, default=None, help="model registry root (default: shipped)")
    q.add_argument("--cache", type=Path, default=_default_cache(), help="class-statistics cache")
    q.add_argument("--no-cache", action="store_true")
    q.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_dataset_build)

    q = ds.add_parser("export", help="a built dataset as nnU-Net v2 raw data or a MONAI datalist")
    q.add_argument(
        "--from",
        dest="source",
        type=Path,
        required=True,
        metavar="DIR",
        help="a built dataset (or a synthesize output folder)",
    )
    q.add_argument("--format", choices=["nnunet", "monai"], required=True)
    q.add_argument(
        "--out",
        type=Path,
        required=True,
        help="nnunet: the nnUNet_raw folder; monai: a folder or a .json path",
    )
    q.add_argument("--id", type=_positive_int, default=501, help="nnU-Net dataset id (default 501)")
    q.add_argument("--name", default="CardioSynth", help="dataset name (default CardioSynth)")
    q.add_argument(
        "--include-real",
        type=Path,
        default=None,
        metavar="DATA",
        help="also the real subjects of this ACDC-layout folder (testing/ ones as test cases)",
    )
    q.add_argument("--folds", type=_positive_int, default=5, help="cross-validation folds (default 5)")
    q.add_argument("--fold", type=int, default=0, help="monai: the validation fold (default 0)")
    q.add_argument("--seed", type=_seed, default=0, help="split seed (default 0)")
    q.add_argument("--overwrite", action="store_true")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_dataset_export)
