"""GCP constructs: a CMEK model bucket (and its usage-log bucket) and a private GPU node group.

Never imports ``lepton_cdk.aws``; shared pieces come from ``lepton_cdk.core``.
"""

from .bucket import AccessLogBucket, ImportedModelBucket, ModelArtifacts, ModelBucket
from .gpu_nodes import DEFAULT_MACHINE_TYPE, DEFAULT_SOURCE_IMAGE, GpuNodeGroup, default_accelerator
from .iam import ServiceAccount
from .monitoring import Monitoring
from .network import PrivateNetwork
from .serving import ModelServing
from .transfer import DataTransferJob

__all__ = [
    "DEFAULT_MACHINE_TYPE", "DEFAULT_SOURCE_IMAGE", "AccessLogBucket", "DataTransferJob", "GpuNodeGroup", "ImportedModelBucket", "ModelArtifacts", "ModelBucket",
    "PrivateNetwork", "ServiceAccount", "default_accelerator",
    "ModelServing", "Monitoring",
]
