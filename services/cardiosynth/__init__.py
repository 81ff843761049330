"""cardiosynth: labelled cardiac MR data with a chosen pathology.

The package is laid out by architecture layer:

- :mod:`cardiosynth.data`: ACDC-layout reader, phantom generator, preprocessing, biomarkers.
- later layers (models, synthesis, evaluation, storage, workers, gateway) build on it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cardiosynth")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
