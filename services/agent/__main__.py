"""``python -m meshwright.agent``."""

from __future__ import annotations

import sys

from meshwright.agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
