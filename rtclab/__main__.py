"""``python -m rtclab`` is the ``rtclab`` command (for a venv's Python without its scripts dir)."""

import sys

from rtclab.cli import main

sys.exit(main())
