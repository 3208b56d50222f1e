"""``python -m roadsense.cli``."""

import sys

from roadsense.cli.main import main

sys.exit(main())
