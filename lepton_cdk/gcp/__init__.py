"""GCP constructs: a CMEK model bucket (and its usage-log bucket) and a private GPU node group.

Never imports ``lepton_cdk.aws``; shared pieces come from ``lepton_cdk.core``.

A mirror image of :mod:`lepton_cdk.aws` (see its docstring, and
``docs/vocabulary.md`` for the one name each shared concept has).
"""

from lepton_cdk.extras import require_extra

# First, because the provider bindings load lazily: without this a missing provider would surface
# only at the first resource declared, as a bare ModuleNotFoundError from deep inside a construct.
require_extra(__name__, "gcp")

from .bucket import AccessLogBucket, ImportedModelBucket, ModelArtifacts, ModelBucket  # noqa: E402
from .gpu_nodes import DEFAULT_IMAGE, DEFAULT_INSTANCE_TYPE, GpuNodeGroup, default_accelerator  # noqa: E402
from .iam import ServiceAccount  # noqa: E402
from .monitoring import Monitoring  # noqa: E402
from .network import PrivateNetwork  # noqa: E402
from .routing import TrafficSplit  # noqa: E402
from .serving import ModelServing  # noqa: E402
from .transfer import DataTransferJob  # noqa: E402

__all__ = [
    "DEFAULT_IMAGE", "DEFAULT_INSTANCE_TYPE", "AccessLogBucket", "DataTransferJob", "GpuNodeGroup", "ImportedModelBucket", "ModelArtifacts", "ModelBucket",
    "PrivateNetwork", "ServiceAccount", "default_accelerator",
    "ModelServing", "Monitoring",
    "TrafficSplit",
]
