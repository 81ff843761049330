"""``python -m cardiosynth.cli`` (as when the command line was the module ``cardiosynth/cli.py``)."""

import sys

from cardiosynth.cli import main

sys.exit(main())
