"""Names for GCP resources that Terraform cannot generate (GCP requires explicit names)."""

from __future__ import annotations

import hashlib

from lepton_cdk.core.framework import Construct


def stable_suffix(construct: Construct, length: int = 8) -> str:
    """A lowercase hex suffix that depends only on the construct's path, so names survive re-synths.

    Path components named ``"Default"`` are left out, as cdktf leaves them out
    of logical ids: wrapping constructs in a ``"Default"`` child (what the
    infra stacks do with :class:`~lepton_cdk.patterns.MigrationTarget`)
    changes neither their logical ids nor their names.
    """
    path = "/".join(part for part in construct.node.path.split("/") if part != "Default")
    return hashlib.sha256(path.encode()).hexdigest()[:length]
