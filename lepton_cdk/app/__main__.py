"""``python -m lepton_cdk.app``: synthesize the stacks the ``LEPTON_*`` environment asks for."""

import sys

from .main import main

sys.exit(main())
