"""Phantom generator: an ACDC-format data set of synthetic biventricular hearts.

- :mod:`.anatomy`: the analytic heart (LV shell, RV crescent, ED/ES), fitted to target volumes;
- :mod:`.params`: per-group sampling of clinical targets that obey the ACDC criteria;
- :mod:`.appearance`: bSSFP-like rendering (tissues, bias field, Rician noise, partial volume);
- :mod:`.generator`: subjects to ACDC files, deterministic by seed, in parallel;
- :mod:`.preview`: a montage PNG for a person to look at.
"""

from cardiosynth.data.phantom.generator import generate_dataset, generate_subject
from cardiosynth.data.phantom.params import (
    PHANTOM_CONTENT,
    PHANTOM_VERSION,
    PHANTOM_VERSIONS,
    check_phantom_version,
)

__all__ = [
    "PHANTOM_CONTENT",
    "PHANTOM_VERSION",
    "PHANTOM_VERSIONS",
    "check_phantom_version",
    "generate_dataset",
    "generate_subject",
]
