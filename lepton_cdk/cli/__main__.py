"""``python -m lepton_cdk.cli``: the same as the ``lepton`` console script."""

import sys

from .root import main

sys.exit(main())
