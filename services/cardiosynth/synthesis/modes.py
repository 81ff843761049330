"""The named choices of the sampler, without numerics (the API and CLI import these cheaply).

``CORRELATION_MODES`` and ``INTERPOLATIONS`` are the single source of truth: the CLI's choices, the
API schema's ``Literal`` and request validation all derive from them.

Correlation modes (see :mod:`cardiosynth.synthesis.sampling` for the maths):

- ``none``: independent truncated-normal entries;
- ``latent``: latent correlation ``Cz`` of the class (per-slice standardised residuals);
- ``slices``: slice correlation ``Cs`` of the class (subjects as observations);
- ``both``: ``Cs`` and ``Cz`` (separable, ``Cov(vec v) = Cz (x) Cs``);
- ``population``: the class's low-rank slice model per latent dimension (Volokitin et al. 2020);
- ``paper``: ``Cz`` with the paper's slice correlation, Kendall tau between the base NOR subject's
  slices over its own latent values (kept for comparison: it measures how alike the slice profiles
  of one subject are, not how slices co-vary over subjects).

Interpolation families: ``sample`` (the paper's: towards a fresh class sample) and ``shift``
(identity-preserving: the base subject transported into the class's distribution).
"""

from __future__ import annotations

from typing import Literal, get_args

CorrelationMode = Literal["none", "latent", "slices", "both", "population", "paper"]
CORRELATION_MODES: tuple[str, ...] = get_args(CorrelationMode)
Interpolation = Literal["sample", "shift"]
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)
# The defaults of the CLI, the API and SynthesisRequest. `slices`: in `cardiosynth evaluate synthesis`
# (phantom v2, held-out subjects) it ranks second on the biomarker distance (normalised W1) behind
# `none`, which drops the slice correlation and with it 3D consistency (adjacent-slice Dice 0.02-0.05
# below the real subjects in every class, where `slices` is within 0.01); see README.
DEFAULT_CORRELATION: CorrelationMode = "slices"
DEFAULT_INTERPOLATION: Interpolation = "sample"


def check_mode(mode: str) -> CorrelationMode:
    """``mode`` if it is a correlation mode, else ``ValueError``."""
    if mode not in CORRELATION_MODES:
        raise ValueError(f"unknown correlation mode {mode!r}; expected one of {list(CORRELATION_MODES)}")
    return mode  # type: ignore[return-value]


def check_interpolation(family: str) -> Interpolation:
    """``family`` if it is an interpolation family, else ``ValueError``."""
    if family not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {family!r}; expected one of {list(INTERPOLATIONS)}")
    return family  # type: ignore[return-value]
