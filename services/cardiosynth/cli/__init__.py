"""The ``cardiosynth`` command line.

One module per command group: :mod:`.data` (phantom, summary, preview), :mod:`.train`,
:mod:`.synthesize`, :mod:`.evaluate`, :mod:`.service` (up, demo, openapi, models); the dataset commands
live in :mod:`cardiosynth.export.commands`. Shared argument validators are in :mod:`.args`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cardiosynth import __version__
from cardiosynth.cli.args import _positive_float, _positive_int, _seed, _severity, precision_context
from cardiosynth.cli.common import _default_cache, _echo, _ensure_default_data, log
from cardiosynth.cli.data import add_data_commands, add_preview_command, cmd_phantom, cmd_preview, cmd_summary
from cardiosynth.cli.evaluate import add_evaluate_commands, cmd_evaluate_models, cmd_evaluate_synthesis
from cardiosynth.cli.service import (
    add_models_commands,
    add_service_commands,
    cmd_demo,
    cmd_models_list,
    cmd_models_push,
    cmd_openapi,
    cmd_up,
)
from cardiosynth.cli.synthesize import add_synthesize_commands, cmd_synthesize
from cardiosynth.cli.train import add_train_commands, cmd_train
from cardiosynth.log import configure_logging

# Re-exported: tests, bench and cardiosynth.export.commands import these from ``cardiosynth.cli``.
__all__ = [
    "_default_cache",
    "_echo",
    "_ensure_default_data",
    "_positive_float",
    "_positive_int",
    "_seed",
    "_severity",
    "build_parser",
    "cmd_demo",
    "cmd_evaluate_models",
    "cmd_evaluate_synthesis",
    "cmd_models_list",
    "cmd_models_push",
    "cmd_openapi",
    "cmd_phantom",
    "cmd_preview",
    "cmd_summary",
    "cmd_synthesize",
    "cmd_train",
    "cmd_up",
    "log",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardiosynth",
        description="Labelled cardiac MR data with a chosen pathology (label VAE, latent synthesis, SPADE).",
    )
    parser.add_argument("--version", action="version", version=f"cardiosynth {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # The order of the calls is the order of the commands in ``--help``.
    add_data_commands(sub)  # phantom, summary
    add_train_commands(sub)
    add_synthesize_commands(sub)
    add_service_commands(sub)  # up, demo, openapi
    add_evaluate_commands(sub)  # evaluate models / synthesis
    add_models_commands(sub)  # models list / push
    add_preview_command(sub)

    from cardiosynth.export.commands import add_dataset_commands

    add_dataset_commands(sub)  # dataset build / dataset export
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(args.log_level)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        with precision_context(args):  # --precision, for commands whose core takes no precision itself
            code: int = args.func(args)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        # Bad input: one clear line, no traceback (the message names the file or value at fault).
        log.error("%s", exc)
        return 2
    return code
