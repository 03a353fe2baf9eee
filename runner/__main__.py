"""``python -m runner`` is the same as the ``runner`` command."""

import sys

from .cli import main

sys.exit(main())
