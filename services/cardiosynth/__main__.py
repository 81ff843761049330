"""``python -m cardiosynth``."""

import sys

from cardiosynth.cli import main

sys.exit(main())
