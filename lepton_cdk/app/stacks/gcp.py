"""The GCP target stack: a :class:`~lepton_cdk.patterns.MigrationTarget` (a
CMEK model bucket holding the manifest's artifacts, a private GPU managed
instance group that fetches, verifies and serves them behind a regional
internal load balancer; alert policies when ``LEPTON_ALERT_EMAILS`` is set;
optionally a Storage Transfer Service copy of the source data) with the provider and backend.

The target is the stack's child ``"Default"``, which cdktf leaves out of
logical ids and :func:`lepton_cdk.gcp.naming.stable_suffix` out of names, so
resources keep the ids and names they had before the pattern existed.

This module (with ``aws.py``) is where providers and the backend are made.
"""

from __future__ import annotations

from lepton_cdk.checks.aspect import PolicyChecks
from lepton_cdk.contract import Manifest
from lepton_cdk.core.framework import Construct, LocalBackend, TerraformOutput, TerraformStack, google
from lepton_cdk.gcp.routing import TrafficSplit
from lepton_cdk.patterns import MigrationTarget, S3Source

from ..config import InfraConfig
from . import RETAIN_DATA_OFF_REASON


def google_provider(scope: Construct, config: InfraConfig) -> google.provider.GoogleProvider:
    """The Google provider for ``config``; credentials come from the environment (ADC), never the JSON."""
    return google.provider.GoogleProvider(
        scope, "google",
        project=config.gcp_project,
        region=config.gcp_region,
        default_labels={"managed_by": "lepton-cdk", "lepton_stack": config.stack_name("gcp")},
    )


class GcpTargetStack(TerraformStack):
    """A MigrationTarget on GCP built from the config, with a local backend.

    Outputs: ``bucket_name``, ``bucket_url``, ``kms_key_id``, ``model_uri``,
    ``model_prefix_uri``, ``model_sha256``, ``model_name``, ``model_version``,
    ``node_group_name``, ``node_service_account_email``,
    ``serving_endpoint_url``, ``serving_ip_address``; with an ``s3://``
    ``LEPTON_SOURCE_URI``: ``data_bucket_name``, ``transfer_id``.
    With ``LEPTON_CUTOVER_DNS=gcp``: ``traffic_endpoint_url`` (the weighted name, ``TrafficSplit``).
    """

    def __init__(self, scope: Construct, id: str, *, config: InfraConfig, manifest: Manifest) -> None:
        super().__init__(scope, id)
        self.provider = google_provider(self, config)
        state_file = config.state_file("gcp")
        if state_file is not None:
            LocalBackend(self, path=state_file)

        source = config.source if config.source is not None and config.source.target == "gcp" else None
        self.target = MigrationTarget(
            self, "Default",
            cloud="gcp",
            manifest=manifest,
            instance_type=config.gcp_machine_type,
            node_count=config.node_count,
            spot=config.spot,
            source=S3Source(bucket=source.bucket, role_arn=source.role_arn or "", prefix=source.prefix) if source is not None else None,
            transfer_mode=config.transfer_mode if source is not None else "incremental",
            alert_emails=config.alert_emails,
            retain_data=config.retain_data,
        )
        self.bucket, self.artifacts, self.nodes = self.target.bucket, self.target.artifacts, self.target.nodes
        self.policy_checks = PolicyChecks.apply(self)
        if not config.retain_data:
            PolicyChecks.suppress(self.target, "LEP-RETAIN-1", reason=RETAIN_DATA_OFF_REASON)

        outputs = {
            "bucket_name": (self.bucket.bucket_name, "Name of the Cloud Storage bucket holding the model artifacts"),
            "bucket_url": (self.bucket.bucket_url, "gs:// URL of the model bucket"),
            "kms_key_id": (self.bucket.kms_key_id, "Id of the Cloud KMS key encrypting the bucket"),
            "model_uri": (self.artifacts.model_uri, "gs:// URI of the primary model artifact"),
            "model_prefix_uri": (self.artifacts.prefix_uri, "gs:// URI of the folder holding every artifact of this model version"),
            "model_sha256": (self.artifacts.model_sha256, "sha256 of the primary model artifact, from the manifest"),
            "model_name": (manifest.model_name, "Model name, from the manifest"),
            "model_version": (manifest.model_version, "Model version, from the manifest"),
            "node_group_name": (self.nodes.node_group_name, "Name of the GPU managed instance group"),
            "node_service_account_email": (self.nodes.service_account.email, "E-mail of the GPU nodes' service account"),
            **self.target.outputs,
        }
        for name, (value, description) in outputs.items():
            TerraformOutput(self, name, value=value, description=description)

        # LEPTON_CUTOVER_*: one name in front of the old and the new endpoint; a cutover step changes only the weight.
        split = config.traffic_split
        self.traffic_split = None
        if split is not None and split.dns == "gcp":
            self.traffic_split = TrafficSplit(
                self, "TrafficSplit", zone=split.zone, record_name=split.record_name,
                old_endpoint=split.old_endpoint or self.target.serving, new_endpoint=split.new_endpoint or self.target.serving,
                new_weight_percent=split.weight_percent,
            )
            TerraformOutput(self, "traffic_endpoint_url", value=self.traffic_split.endpoint_url,
                            description="URL callers use: the weighted name in front of the old and the new endpoint")
