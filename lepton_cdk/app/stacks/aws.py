"""The AWS target stack: a :class:`~lepton_cdk.patterns.MigrationTarget` (an
encrypted model bucket holding the manifest's artifacts, a private GPU node
group that fetches, verifies and serves them behind an internal load
balancer, alarms on an SNS topic; optionally a SageMaker endpoint and a
DataSync copy of the source data) with the provider and backend.

The target is the stack's child ``"Default"``, an id cdktf leaves out of
logical ids, so the resources keep the ids they had before the pattern
existed (``ModelBucket_B33D855B``, ``GpuNodes_319A5FAE`` ...).

This module (with ``gcp.py``) is where providers and the backend are made;
the constructs it composes never create either.
"""

from __future__ import annotations

from lepton_cdk.aws.routing import TrafficSplit
from lepton_cdk.checks.aspect import PolicyChecks
from lepton_cdk.contract import Manifest
from lepton_cdk.core.framework import Construct, LocalBackend, TerraformOutput, TerraformStack, aws
from lepton_cdk.patterns import GcsSource, MigrationTarget
from lepton_cdk.testing import AWS_SERVICES, AwsEmulator  # noqa: F401  AWS_SERVICES: the app's tests read it here

from ..config import InfraConfig
from . import RETAIN_DATA_OFF_REASON


def aws_provider(scope: Construct, config: InfraConfig) -> aws.provider.AwsProvider:
    """The AWS provider for ``config``: real AWS, or every used service on one emulator endpoint.

    Credentials never appear in the synthesized JSON: the provider reads them
    from the environment (``AWS_ACCESS_KEY_ID`` ...), a profile or an instance role.
    """
    emulator = _emulator(config)
    if emulator is None:
        p = aws.provider
        tags = p.AwsProviderDefaultTags(tags={"managed-by": "lepton-cdk", "lepton:stack": config.stack_name("aws")})
        return p.AwsProvider(scope, "aws", region=config.aws_region, default_tags=[tags])
    # The emulator's settings, and why each one (no default_tags among them), are lepton_cdk.testing's: one definition
    # shared with users' own tests and the project's.
    return emulator.provider(scope, "aws")


def _emulator(config: InfraConfig) -> AwsEmulator | None:
    return AwsEmulator(config.aws_endpoint, region=config.aws_region) if config.aws_endpoint is not None else None


class AwsTargetStack(TerraformStack):
    """A MigrationTarget on AWS built from the config, with a local backend.

    Outputs: ``bucket_name``, ``bucket_arn``, ``kms_key_arn``, ``model_uri``,
    ``model_prefix_uri``, ``model_sha256``, ``model_name``, ``model_version``,
    ``node_group_name``, ``node_role_arn``, ``serving_endpoint_url``,
    ``serving_load_balancer_dns_name``, ``alarm_topic_arn``; with
    ``LEPTON_MANAGED_ENDPOINT``: ``sagemaker_endpoint_name``,
    ``sagemaker_endpoint_url``; with a ``gs://`` ``LEPTON_SOURCE_URI``:
    ``data_bucket_name``, ``transfer_id``.
    With ``LEPTON_CUTOVER_DNS=aws``: ``traffic_endpoint_url`` (the weighted name, ``TrafficSplit``).
    """

    def __init__(self, scope: Construct, id: str, *, config: InfraConfig, manifest: Manifest) -> None:
        super().__init__(scope, id)
        self.provider = aws_provider(self, config)
        state_file = config.state_file("aws")
        if state_file is not None:
            LocalBackend(self, path=state_file)

        # A TLS-only policy locks out an emulator reached over plain HTTP (and moto treats the
        # policy's condition as always true); real AWS, and an https emulator, keep it.
        emulator = _emulator(config)
        enforce_tls = emulator is None or emulator.enforce_tls
        source = config.source if config.source is not None and config.source.target == "aws" else None
        self.target = MigrationTarget(
            self, "Default",
            cloud="aws",
            manifest=manifest,
            instance_type=config.aws_instance_type,
            node_count=config.node_count,
            spot=config.spot,
            image=config.image_id,
            managed_endpoint=config.managed_endpoint,
            managed_instance_type=config.sagemaker_instance_type if config.managed_endpoint else None,
            source=GcsSource(bucket=source.bucket, hmac_secret_id=source.hmac_secret_id or "", agent_arns=source.agent_arns,
                             prefix=source.prefix) if source is not None else None,
            transfer_mode=config.transfer_mode if source is not None else "incremental",
            alert_emails=config.alert_emails,
            retain_data=config.retain_data,
            enforce_tls=enforce_tls,
        )
        self.bucket, self.artifacts, self.nodes = self.target.bucket, self.target.artifacts, self.target.nodes
        self.policy_checks = PolicyChecks.apply(self)
        if not config.retain_data:
            PolicyChecks.suppress(self.target, "LEP-RETAIN-1", reason=RETAIN_DATA_OFF_REASON)
        if emulator is not None:
            emulator.suppress_tls_policy(self.target.bucket, self.target.data_bucket)

        outputs = {
            "bucket_name": (self.bucket.bucket_name, "Name of the S3 bucket holding the model artifacts"),
            "bucket_arn": (self.bucket.bucket_arn, "ARN of the model bucket"),
            "kms_key_arn": (self.bucket.kms_key_id, "ARN of the KMS key encrypting the bucket"),
            "model_uri": (self.artifacts.model_uri, "s3:// URI of the primary model artifact"),
            "model_prefix_uri": (self.artifacts.prefix_uri, "s3:// URI of the folder holding every artifact of this model version"),
            "model_sha256": (self.artifacts.model_sha256, "sha256 of the primary model artifact, from the manifest"),
            "model_name": (manifest.model_name, "Model name, from the manifest"),
            "model_version": (manifest.model_version, "Model version, from the manifest"),
            "node_group_name": (self.nodes.node_group_name, "Name of the GPU auto scaling group"),
            "node_role_arn": (self.nodes.role.role_arn, "ARN of the GPU nodes' IAM role"),
            **self.target.outputs,
        }
        for name, (value, description) in outputs.items():
            TerraformOutput(self, name, value=value, description=description)

        # LEPTON_CUTOVER_*: one name in front of the old and the new endpoint; a cutover step changes only the weight.
        split = config.traffic_split
        self.traffic_split = None
        if split is not None and split.dns == "aws":
            self.traffic_split = TrafficSplit(
                self, "TrafficSplit", zone=split.zone, record_name=split.record_name,
                old_endpoint=split.old_endpoint or self.target.serving, new_endpoint=split.new_endpoint or self.target.serving,
                new_weight_percent=split.weight_percent,
            )
            TerraformOutput(self, "traffic_endpoint_url", value=self.traffic_split.endpoint_url,
                            description="URL callers use: the weighted name in front of the old and the new endpoint")
