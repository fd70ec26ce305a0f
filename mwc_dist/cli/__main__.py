"""``python -m mwc_dist.cli`` (and ``accelerate launch -m mwc_dist.cli``): the ``mwc`` command."""

import sys

from mwc_dist.cli import main

sys.exit(main())
