"""Names for GCP resources that Terraform cannot generate (GCP requires explicit names)."""

from __future__ import annotations

import hashlib

from lepton_cdk.core.framework import Construct


def stable_suffix(construct: Construct, length: int = 8) -> str:
    """A lowercase hex suffix that depends only on the construct's path, so names survive re-synths."""
    return hashlib.sha256(construct.node.path.encode()).hexdigest()[:length]
