"""Reference stacks for the DataTransferJob constructs, shaped the way a user's own stack would use them.

One app, two stacks: ``transfer-aws`` (DataSync from Cloud Storage into a
ModelBucket) and ``transfer-gcp`` (Storage Transfer Service from S3 into a
ModelBucket), each under the policy Aspect. Synthesized to disk by the
checkov and ``terraform validate`` tests.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

AWS_STACK = "transfer-aws"
GCP_STACK = "transfer-gcp"
AGENT_ARN = "arn:aws:datasync:us-east-1:123456789012:agent/agent-0123456789abcdef0"
SOURCE_ROLE_ARN = "arn:aws:iam::123456789012:role/lepton-storage-transfer"
HMAC_SECRET_ID = "lepton/gcs-hmac"


def synth_transfer_app(outdir: Path) -> Path:
    """Synthesize both transfer stacks into ``outdir`` (a ``cdktf.out``); returns ``outdir``."""
    from lepton_cdk.aws import DataTransferJob as AwsTransfer
    from lepton_cdk.aws import ModelBucket as AwsBucket
    from lepton_cdk.checks.aspect import PolicyChecks
    from lepton_cdk.core import TransferSchedule
    from lepton_cdk.core.framework import App, TerraformOutput, TerraformStack, aws, google
    from lepton_cdk.gcp import DataTransferJob as GcpTransfer
    from lepton_cdk.gcp import ModelBucket as GcpBucket

    app = App(outdir=str(outdir))
    a = TerraformStack(app, AWS_STACK)
    aws.provider.AwsProvider(a, "aws", region="us-east-1")
    PolicyChecks.apply(a)
    bucket = AwsBucket(a, "DataBucket")
    job = AwsTransfer(a, "FromGcs", source_bucket_name="acme-source-data", hmac_secret_id=HMAC_SECRET_ID, agent_arns=[AGENT_ARN],
                      destination=bucket, destination_prefix="datasets/", schedule=TransferSchedule.daily(dt.date(2027, 1, 4)))
    TerraformOutput(a, "task_arn", value=job.task_arn)

    g = TerraformStack(app, GCP_STACK)
    google.provider.GoogleProvider(g, "google", project="lepton-demo", region="us-central1")
    PolicyChecks.apply(g)
    gbucket = GcpBucket(g, "DataBucket")
    gjob = GcpTransfer(g, "FromS3", source_bucket_name="acme-source-data", source_role_arn=SOURCE_ROLE_ARN, destination=gbucket,
                       destination_prefix="datasets/", schedule=TransferSchedule.daily(dt.date(2027, 1, 4)))
    TerraformOutput(g, "job_name", value=gjob.job_name)
    PolicyChecks.synth(app)
    return outdir
