"""AWS constructs: an encrypted model bucket (and its access-log bucket) and a private GPU node group.

Never imports ``lepton_cdk.gcp``; shared pieces come from ``lepton_cdk.core``.

A mirror image of :mod:`lepton_cdk.gcp`: the same construct names and, for
every concept both clouds have, the same prop, attribute and method names
(the table is ``docs/vocabulary.md``). Code that repeats between the two
packages' modules (constructor shapes, the ``mode`` / ``transfer_id`` /
``model`` properties ...) is the same contract written once per cloud, on
purpose: each package reads on its own and neither imports the other;
logic that is truly the same lives in ``lepton_cdk.core``.
"""

from lepton_cdk.extras import require_extra

# First, because the provider bindings load lazily: without this a missing provider would surface
# only at the first resource declared, as a bare ModuleNotFoundError from deep inside a construct.
require_extra(__name__, "aws")

from .bucket import AccessLogBucket, ImportedModelBucket, ModelArtifacts, ModelBucket  # noqa: E402
from .gpu_nodes import DEEP_LEARNING_AMI_PARAMETER, DEFAULT_INSTANCE_TYPE, GpuNodeGroup  # noqa: E402
from .iam import PolicyStatement, ServiceRole  # noqa: E402
from .monitoring import Monitoring  # noqa: E402
from .network import PrivateNetwork  # noqa: E402
from .routing import TrafficSplit  # noqa: E402
from .serving import ManagedModelServing, ModelServing  # noqa: E402
from .transfer import DataTransferJob  # noqa: E402

__all__ = [
    "DEEP_LEARNING_AMI_PARAMETER", "DEFAULT_INSTANCE_TYPE", "AccessLogBucket", "DataTransferJob", "GpuNodeGroup", "ImportedModelBucket", "ModelArtifacts", "ModelBucket",
    "PolicyStatement", "PrivateNetwork", "ServiceRole",
    "ManagedModelServing", "ModelServing", "Monitoring",
    "TrafficSplit",
]
