"""Where a migration target's data comes from: a bucket in the other cloud. Standard library only.

Each descriptor names the bucket and the credential the target cloud's
bulk mover uses to read it, and nothing else; the construct that copies
(``lepton_cdk.aws.DataTransferJob`` / ``lepton_cdk.gcp.DataTransferJob``)
checks the values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GcsSource:
    """A Cloud Storage bucket copied into an AWS target by DataSync.

    :param bucket: the Cloud Storage bucket's name.
    :param hmac_secret_id: name or ARN of the Secrets Manager secret holding
        a Cloud Storage HMAC key as JSON ``{"access_key", "secret_key"}``
        (DataSync has no keyless way to read Cloud Storage; the key never
        appears in the synthesized JSON).
    :param agent_arns: the DataSync agent(s) that reach ``storage.googleapis.com``.
    :param prefix: copy only keys under this folder (ending in ``/``). Default: the whole bucket.
    """

    bucket: str
    hmac_secret_id: str
    agent_arns: Sequence[str] = field(default_factory=tuple)
    prefix: str = ""

    cloud = "gcp"  # the cloud the data lives in

    def __post_init__(self) -> None:
        if isinstance(self.agent_arns, str):  # one ARN given bare: keep it whole, not its characters
            object.__setattr__(self, "agent_arns", (self.agent_arns,))
        else:
            object.__setattr__(self, "agent_arns", tuple(self.agent_arns))

    @property
    def uri(self) -> str:
        """``gs://<bucket>/<prefix>``."""
        return f"gs://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class S3Source:
    """An S3 bucket copied into a GCP target by Storage Transfer Service.

    :param bucket: the S3 bucket's name.
    :param role_arn: the IAM role Storage Transfer Service assumes through
        federation (no static keys); see :mod:`lepton_cdk.gcp.transfer` for its trust policy.
    :param prefix: copy only keys under this folder (ending in ``/``). Default: the whole bucket.
    """

    bucket: str
    role_arn: str
    prefix: str = ""

    cloud = "aws"  # the cloud the data lives in

    @property
    def uri(self) -> str:
        """``s3://<bucket>/<prefix>``."""
        return f"s3://{self.bucket}/{self.prefix}"


__all__ = ["GcsSource", "S3Source"]
