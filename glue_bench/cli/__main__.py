"""`python -m glue_bench.cli ARGS`: the same as `glue-bench ARGS`."""

import sys

from glue_bench.cli import main

sys.exit(main())
