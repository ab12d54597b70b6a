"""``python -m infra``: the packaged app, :func:`lepton_cdk.app.main.main`."""

import sys

from lepton_cdk.app.main import main

sys.exit(main())
