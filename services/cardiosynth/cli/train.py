"""``cardiosynth train``: train the label VAE or the SPADE translator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cardiosynth.cli.args import _positive_float, _positive_int, _seed, add_device_options, precision_arg
from cardiosynth.cli.common import _echo
from cardiosynth.models.catalog import DEFAULT_VERSION


def cmd_train(args: argparse.Namespace) -> int:
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "seed": args.seed,
    }
    common = {
        "holdout": args.holdout,
        "resume": args.resume,
        "overwrite": args.overwrite,
        "version": args.version,
        "model_root": args.model_root,
        "show_progress": not args.quiet,
        "device": args.device,
        "precision": precision_arg(args.precision),
    }
    if args.model == "vae":
        from cardiosynth.models.train_vae import run_vae_training, vae_preset

        spade_only = (("--l1-weight", args.l1_weight), ("--kld-weight", args.kld_weight),
                      ("--noise/--no-noise", args.noise), ("--ema-decay", args.ema_decay))  # fmt: skip
        for flag, value in spade_only:
            if value is not None:
                raise ValueError(f"{flag} ({value}) is a SPADE setting; the label VAE has none")
        config = vae_preset(
            args.preset, **overrides, beta=args.beta, label_interpolation=args.label_interpolation
        )
        path = run_vae_training(args.data, args.out, config, **common)
    else:
        if args.beta is not None:
            raise ValueError(f"--beta {args.beta} is the label VAE's KL weight; SPADE has none")
        if args.label_interpolation is not None:
            raise ValueError(
                f"--label-interpolation {args.label_interpolation} is the label VAE's; SPADE translates the "
                "labels synthesis gives it"
            )
        from cardiosynth.models.train_spade import run_spade_training, spade_preset

        spade = spade_preset(args.preset, **overrides, lambda_l1=args.l1_weight, lambda_kld=args.kld_weight,
                             noise=args.noise, ema_decay=args.ema_decay)  # fmt: skip
        path = run_spade_training(args.data, args.out, spade, **common)
    card = json.loads((path / "card.json").read_text(encoding="utf-8"))
    _echo(f"{args.model} model {args.version}: {path}")
    for name, value in card.get("metrics", {}).items():
        _echo(f"  {name}: {value:.4f}" if isinstance(value, float) else f"  {name}: {value}")
    return 0


def add_train_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("train", help="train the label VAE or the SPADE translator")
    p.add_argument("model", choices=["vae", "spade"])
    p.add_argument("--data", type=Path, required=True, help="ACDC-layout data (phantom or real ACDC)")
    p.add_argument(
        "--out", type=Path, required=True, help="run directory (checkpoint, history, samples, model/)"
    )
    p.add_argument("--preset", default="cpu-small", choices=["cpu-small", "paper"], help="default cpu-small")
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the preset's epochs")
    p.add_argument("--batch-size", type=_positive_int, default=None)
    p.add_argument("--lr", type=_positive_float, default=None, help="learning rate (SPADE: the generator's)")
    p.add_argument("--seed", type=_seed, default=None, help="run seed (default 0)")
    p.add_argument(
        "--beta", type=_positive_float, default=None, help="VAE only: the KL weight (default 15, the paper's)"
    )
    p.add_argument(
        "--label-interpolation", choices=("nearest", "linear"),  # data.preprocess.LABEL_INTERPOLATIONS
        default=None,
        help="VAE only: how training labels are resampled to 1.5 mm (default nearest; linear avoids the "
        "repeated pixel rows that thicken walls, see README); synthesis uses the model's",
    )  # fmt: skip
    p.add_argument(
        "--l1-weight", type=float, default=None,
        help="SPADE only: weight of the L1 term against the real image (default 1; 10 before noise "
        "injection)",
    )  # fmt: skip
    p.add_argument(
        "--kld-weight", type=float, default=None,
        help="SPADE only: weight of the style encoder's KL term (default 0.05, SPADE's; phantom-v2d: "
        "0.005)",
    )  # fmt: skip
    p.add_argument(
        "--noise", action=argparse.BooleanOptionalAction, default=None,
        help="SPADE only: noise injection into the generator (default on; --no-noise as phantom-v1/v2)",
    )  # fmt: skip
    p.add_argument(
        "--ema-decay", type=float, default=None,
        help="SPADE only: export the moving average of the generator's weights (default 0.999; 0: the "
        "last weights)",
    )  # fmt: skip
    p.add_argument("--holdout", type=float, default=0.2, help="share of subjects held out per group")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="start afresh over an existing run")
    p.add_argument("--version", default=DEFAULT_VERSION, help=f"model version (default {DEFAULT_VERSION})")
    p.add_argument("--model-root", type=Path, default=None, help="also install into this registry root")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_options(p, "mixed precision (AMP) of training; fp16 is refused")
    p.set_defaults(func=cmd_train)
