"""``python -m service.cli``: the ``sightline`` command."""

import sys

from service.cli import main

sys.exit(main())
