"""``python -m parakit.cli``: the ``parakit`` command without its console script."""

import sys

from parakit.cli import main

sys.exit(main())
