"""Cloud-neutral pieces shared by ``lepton_cdk.aws`` and ``lepton_cdk.gcp``.

Importing this package does not import cdktf: the protocols and errors are
standard library only. The framework itself (cdktf, constructs, provider
bindings) is reached through :mod:`lepton_cdk.core.framework`.
"""

from .errors import ConstructValidationError
from .interfaces import (
    Grant,
    IAwsBucket,
    IAwsPrincipal,
    IBucket,
    IDataTransferJob,
    IGcpPrincipal,
    IGcsBucket,
    IGpuNodeGroup,
    IGrantable,
    IHasArn,
    IHasId,
    IModelArtifacts,
    IModelServing,
    ModelObject,
    is_bucket_of,
)
from .transfer import MODES as TRANSFER_MODES
from .transfer import TransferSchedule

__all__ = [
    "TRANSFER_MODES", "ConstructValidationError", "Grant", "IAwsBucket", "IAwsPrincipal", "IBucket", "IDataTransferJob", "IGcpPrincipal",
    "IGcsBucket", "IGpuNodeGroup", "IGrantable", "IHasArn", "IHasId", "IModelArtifacts", "IModelServing", "ModelObject",
    "TransferSchedule", "is_bucket_of",
]
