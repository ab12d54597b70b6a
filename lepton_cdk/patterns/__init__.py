"""L3 patterns: a whole migration target in one construct.

``from lepton_cdk.patterns import MigrationTarget, GcsSource, S3Source``.
Patterns may import both ``lepton_cdk.aws`` and ``lepton_cdk.gcp`` (each
only when the cloud asked for needs it); those two never import each other.
"""

from .migration_target import CLOUDS, DEFAULT_INSTANCE_TYPE, MigrationTarget
from .sources import GcsSource, S3Source

__all__ = ["CLOUDS", "DEFAULT_INSTANCE_TYPE", "GcsSource", "MigrationTarget", "S3Source"]
