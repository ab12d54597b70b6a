"""AWS constructs: an encrypted model bucket (and its access-log bucket) and a private GPU node group.

Never imports ``lepton_cdk.gcp``; shared pieces come from ``lepton_cdk.core``.
"""

from .bucket import AccessLogBucket, ImportedModelBucket, ModelArtifacts, ModelBucket
from .gpu_nodes import DEEP_LEARNING_AMI_PARAMETER, DEFAULT_INSTANCE_TYPE, GpuNodeGroup
from .iam import PolicyStatement, ServiceRole
from .monitoring import Monitoring
from .network import PrivateNetwork
from .serving import ManagedModelServing, ModelServing
from .transfer import DataTransferJob

__all__ = [
    "DEEP_LEARNING_AMI_PARAMETER", "DEFAULT_INSTANCE_TYPE", "AccessLogBucket", "DataTransferJob", "GpuNodeGroup", "ImportedModelBucket", "ModelArtifacts", "ModelBucket",
    "PolicyStatement", "PrivateNetwork", "ServiceRole",
    "ManagedModelServing", "ModelServing", "Monitoring",
]
