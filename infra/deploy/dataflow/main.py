"""Flex Template entry point (FLEX_TEMPLATE_PYTHON_PY_FILE): runs ``pipelines.lead_pipeline.main``.

The launcher runs this file as ``__main__``. Keeping it a two-line shim means every DoFn and function of the job
lives in an importable module (``pipelines``, ``transforms``, ...), so nothing has to be pickled from ``__main__``
and ``save_main_session`` stays off.
"""

import sys

from pipelines.lead_pipeline import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
