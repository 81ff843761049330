"""Argument validators shared by every command group (argparse ``type=`` callables).

Each raises :class:`argparse.ArgumentTypeError` naming the offending value, so argparse prints one
usage line and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from typing import Any


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {number}")
    return number


def _seed(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer, got {value!r}") from None
    if not 0 <= number < 2**32:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2^32), got {number}")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {number}")
    return number


def _severity(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"severity must be a number, got {value!r}") from None
    if not 0.0 < number <= 1.0:
        raise argparse.ArgumentTypeError(f"severity must be in (0, 1], got {number}")
    return number


# The forms cardiosynth.device accepts, checked here without importing torch: argparse converts the
# string default too, and ``cardiosynth --help`` should not pay for a torch import.
_DEVICE_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


def _device(value: str) -> str:
    text = value.strip().lower()
    if not _DEVICE_SPEC.match(text):
        raise argparse.ArgumentTypeError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
    return text


def add_device_options(p: argparse.ArgumentParser, what: str) -> None:
    """``--device`` and ``--precision`` for a command that runs the networks (``what`` says how)."""
    p.add_argument("--device", type=_device, default="auto",
                   help="auto (CUDA when available, default), cpu, cuda or cuda:N")  # fmt: skip
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help=f"{what}: auto = fp32 on CPU, bf16 on CUDA (fp16: CUDA only)")  # fmt: skip


def precision_arg(value: str) -> str | None:
    """``--precision`` for the core: ``None`` for ``auto`` (the device's default)."""
    return None if value == "auto" else value


def precision_context(args: argparse.Namespace) -> contextlib.AbstractContextManager[Any]:
    """The command's ``--precision`` as the default of every model pass inside it
    (:func:`cardiosynth.device.precision_scope`); nothing (and no torch import) without one."""
    value = getattr(args, "precision", None)
    if value in (None, "auto"):
        return contextlib.nullcontext()
    from cardiosynth.device import precision_scope

    return precision_scope(value)
