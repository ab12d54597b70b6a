"""The AWS target stack: an encrypted model bucket holding the manifest's
artifacts and a private GPU node group that fetches and verifies them.

This module (with ``gcp.py``) is where providers and the backend are made;
the constructs it composes never create either.
"""

from __future__ import annotations

from lepton_cdk.aws import GpuNodeGroup, ModelBucket
from lepton_cdk.checks.aspect import PolicyChecks
from lepton_cdk.contract import Manifest
from lepton_cdk.core.framework import Construct, LocalBackend, TerraformOutput, TerraformStack, aws

from ..config import InfraConfig
from . import RETAIN_DATA_OFF_REASON

# Every AWS service the stack calls; with LEPTON_AWS_ENDPOINT set, each one points at the emulator.
AWS_SERVICES = ("autoscaling", "ec2", "iam", "kms", "s3", "ssm", "sts")


def aws_provider(scope: Construct, config: InfraConfig) -> aws.provider.AwsProvider:
    """The AWS provider for ``config``: real AWS, or every used service on one emulator endpoint.

    Credentials never appear in the synthesized JSON: the provider reads them
    from the environment (``AWS_ACCESS_KEY_ID`` ...), a profile or an instance role.
    """
    p = aws.provider
    if config.aws_endpoint is None:
        tags = p.AwsProviderDefaultTags(tags={"managed-by": "lepton-cdk", "lepton:stack": config.stack_name("aws")})
        return p.AwsProvider(scope, "aws", region=config.aws_region, default_tags=[tags])
    endpoint = config.aws_endpoint
    # No default_tags on an emulator: moto copies a launch template's own tags into its launch data,
    # which Terraform then reports as drift on every plan.
    return p.AwsProvider(
        scope, "aws",
        region=config.aws_region,
        endpoints=[p.AwsProviderEndpoints(**{service: endpoint for service in AWS_SERVICES})],
        s3_use_path_style=True,
        skip_credentials_validation=True,
        skip_requesting_account_id=True,
        skip_metadata_api_check="true",
        skip_region_validation=True,
        # An emulator gap should fail in seconds, not retry for minutes.
        max_retries=2,
    )


class AwsTargetStack(TerraformStack):
    """ModelBucket + the manifest's artifacts + GpuNodeGroup, with a local backend.

    Outputs: ``bucket_name``, ``bucket_arn``, ``kms_key_arn``, ``model_uri``,
    ``model_prefix_uri``, ``model_sha256``, ``model_name``, ``model_version``,
    ``node_group_name``, ``node_role_arn``.
    """

    def __init__(self, scope: Construct, id: str, *, config: InfraConfig, manifest: Manifest) -> None:
        super().__init__(scope, id)
        self.provider = aws_provider(self, config)
        state_file = config.state_file("aws")
        if state_file is not None:
            LocalBackend(self, path=state_file)

        # A TLS-only policy locks out an emulator reached over plain HTTP (and moto treats the
        # policy's condition as always true); real AWS, and an https emulator, keep it.
        enforce_tls = not (config.aws_endpoint or "").startswith("http://")
        self.bucket = ModelBucket(self, "ModelBucket", retain_on_destroy=config.retain_data, enforce_tls=enforce_tls)
        self.policy_checks = PolicyChecks.apply(self)
        if not config.retain_data:
            PolicyChecks.suppress(self.bucket, "LEP-RETAIN-1", reason=RETAIN_DATA_OFF_REASON)
        if not enforce_tls:
            PolicyChecks.suppress(self.bucket, "LEP-S3-1", reason=(
                f"LEPTON_AWS_ENDPOINT={config.aws_endpoint} is a plain-HTTP emulator: a TLS-only policy would lock "
                "the stack out of its own bucket; real AWS keeps the policy"))
        self.artifacts = self.bucket.upload_artifacts(manifest)
        self.nodes = GpuNodeGroup(
            self, "GpuNodes",
            model=self.artifacts,
            instance_type=config.aws_instance_type,
            image_id=config.image_id,
            min_size=config.node_count,
            desired_capacity=config.node_count,
            max_size=max(1, config.node_count),
        )

        outputs = {
            "bucket_name": (self.bucket.bucket_name, "Name of the S3 bucket holding the model artifacts"),
            "bucket_arn": (self.bucket.bucket_arn, "ARN of the model bucket"),
            "kms_key_arn": (self.bucket.key_arn, "ARN of the KMS key encrypting the bucket"),
            "model_uri": (self.artifacts.model_uri, "s3:// URI of the primary model artifact"),
            "model_prefix_uri": (self.artifacts.prefix_uri, "s3:// URI of the folder holding every artifact of this model version"),
            "model_sha256": (self.artifacts.model_sha256, "sha256 of the primary model artifact, from the manifest"),
            "model_name": (manifest.model_name, "Model name, from the manifest"),
            "model_version": (manifest.model_version, "Model version, from the manifest"),
            "node_group_name": (self.nodes.node_group_name, "Name of the GPU auto scaling group"),
            "node_role_arn": (self.nodes.role.role_arn, "ARN of the GPU nodes' IAM role"),
        }
        for name, (value, description) in outputs.items():
            TerraformOutput(self, name, value=value, description=description)
