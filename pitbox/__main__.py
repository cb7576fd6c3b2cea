"""``python -m pitbox``: the ``pitbox`` command."""

import sys

from pitbox.cli import main

sys.exit(main())
