"""``python -m symode``: the ``symode`` command (see :mod:`symode.cli`)."""

import sys

from .cli import main

sys.exit(main())
