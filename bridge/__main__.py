"""``python -m bridge``: the same as the ``altinn-bridge`` command."""

import sys

from bridge.cli import main

sys.exit(main())
