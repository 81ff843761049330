"""The named choices of the sampler, without numerics (the API and CLI import these cheaply).

``CORRELATION_MODES`` and ``INTERPOLATIONS`` are the single source of truth: the CLI's choices, the
API schema's ``Literal`` and request validation all derive from them.

Correlation modes (see :mod:`cardiosynth.synthesis.sampling` for the maths):

- ``none``: independent truncated-normal entries;
- ``latent``: latent correlation ``Cz`` of the class (per-slice standardised residuals);
- ``slices``: slice correlation ``Cs`` of the class (subjects as observations);
- ``both``: ``Cs`` and ``Cz`` (separable, ``Cov(vec v) = Cz (x) Cs``);
- ``population``: the class's low-rank slice model per latent dimension (Volokitin et al. 2020);
- ``joint``: the class's full correlation over every (slice, latent dimension) pair at once, a
  Gaussian over the span of its own subjects' residuals (no separability; rank ``n - 1``);
- ``paper``: ``Cz`` with the paper's slice correlation, Kendall tau between the base NOR subject's
  slices over its own latent values (kept for comparison: it measures how alike the slice profiles
  of one subject are, not how slices co-vary over subjects).

Interpolation families: ``sample`` (the paper's: towards a fresh class sample) and ``shift``
(identity-preserving: the base subject transported into the class's distribution).
"""

from __future__ import annotations

from typing import Literal, get_args

CorrelationMode = Literal["none", "latent", "slices", "both", "population", "joint", "paper"]
CORRELATION_MODES: tuple[str, ...] = get_args(CorrelationMode)
Interpolation = Literal["sample", "shift"]
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)
# The defaults of the CLI, the API and SynthesisRequest. `joint`: in `cardiosynth evaluate synthesis`
# (phantom v2, held-out subjects, every mode, two splits) it has the best mean rank on the biomarker
# distance over both splits (1.3 and 2.5; `both` 2.6 and 2.3, `slices` 2.1 and 3.1) and a smaller
# wall bias than `slices` in every class of both: its samples stay on the span of real hearts, so
# the decoder does not turn them into thick walls (+1.7 / -0.9 / +0.3 / +1.1 / +1.5 mm against +4.8
# / +2.7 / +1.0 / +2.0 / +2.3 with `slices` on the first split); see README and
# reports/synthesis-phantom-v2/joint/. Against an unseen cohort of 40 subjects per class (the design
# at which the W1 figure can pass a right method and fail a wrong one) it has the lowest mean W1 in all
# five classes (mean rank 0.4; `both` 1.5, the others 3.2-4.4): reports/synthesis-phantom-v2/cohort/.
DEFAULT_CORRELATION: CorrelationMode = "joint"
DEFAULT_INTERPOLATION: Interpolation = "sample"
# One line for the API schema and the web page's tooltip.
CORRELATION_HELP = (
    "correlation of the sampled latents: joint (default: the class's own correlation over slices and "
    "latent dimensions at once), slices, latent, both (the paper's), population, paper (the paper's "
    "single-subject slice correlation), none"
)


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
