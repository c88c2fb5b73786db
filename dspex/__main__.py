"""``python -m dspex <command>``: the same as the ``dspex`` console script (see dspex/cli.py)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
