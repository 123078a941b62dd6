"""``python -m airtrace`` is the same as the ``airtrace`` console script."""

import sys

from airtrace.cli import main

sys.exit(main())
