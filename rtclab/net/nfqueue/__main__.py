"""``python -m rtclab.net.nfqueue``: the impairing process (see :func:`.worker.main`)."""

import sys

from .worker import main

if __name__ == "__main__":
    sys.exit(main())
