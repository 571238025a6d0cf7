"""``python -m gateway``: the same as ``leadflow gateway`` (what ``leadflow local up --gateway`` starts)."""

import sys

from gateway.server import main

sys.exit(main())
