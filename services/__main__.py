"""``python -m meshwright`` is the ``meshwright`` command."""

import sys

from meshwright.cli import main

sys.exit(main())
