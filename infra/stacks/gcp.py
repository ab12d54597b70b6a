"""The GCP target stack: a CMEK model bucket holding the manifest's artifacts
and a private GPU managed instance group that fetches and verifies them.

This module (with ``aws.py``) is where providers and the backend are made.
"""

from __future__ import annotations

from lepton_cdk.checks.aspect import PolicyChecks
from lepton_cdk.contract import Manifest
from lepton_cdk.core.framework import Construct, LocalBackend, TerraformOutput, TerraformStack, google
from lepton_cdk.gcp import GpuNodeGroup, ModelBucket

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
    """ModelBucket + the manifest's artifacts + GpuNodeGroup, with a local backend.

    Outputs: ``bucket_name``, ``bucket_url``, ``kms_key_id``, ``model_uri``,
    ``model_prefix_uri``, ``model_sha256``, ``model_name``, ``model_version``,
    ``node_group_name``, ``node_service_account_email``.
    """

    def __init__(self, scope: Construct, id: str, *, config: InfraConfig, manifest: Manifest) -> None:
        super().__init__(scope, id)
        self.provider = google_provider(self, config)
        state_file = config.state_file("gcp")
        if state_file is not None:
            LocalBackend(self, path=state_file)

        self.bucket = ModelBucket(self, "ModelBucket", retain_on_destroy=config.retain_data)
        self.policy_checks = PolicyChecks.apply(self)
        if not config.retain_data:
            PolicyChecks.suppress(self.bucket, "LEP-RETAIN-1", reason=RETAIN_DATA_OFF_REASON)
        self.artifacts = self.bucket.upload_artifacts(manifest)
        self.nodes = GpuNodeGroup(self, "GpuNodes", model=self.artifacts, machine_type=config.gcp_machine_type,
                                  target_size=config.node_count)

        outputs = {
            "bucket_name": (self.bucket.bucket_name, "Name of the Cloud Storage bucket holding the model artifacts"),
            "bucket_url": (self.bucket.bucket_url, "gs:// URL of the model bucket"),
            "kms_key_id": (self.bucket.key_id, "Id of the Cloud KMS key encrypting the bucket"),
            "model_uri": (self.artifacts.model_uri, "gs:// URI of the primary model artifact"),
            "model_prefix_uri": (self.artifacts.prefix_uri, "gs:// URI of the folder holding every artifact of this model version"),
            "model_sha256": (self.artifacts.model_sha256, "sha256 of the primary model artifact, from the manifest"),
            "model_name": (manifest.model_name, "Model name, from the manifest"),
            "model_version": (manifest.model_version, "Model version, from the manifest"),
            "node_group_name": (self.nodes.node_group_name, "Name of the GPU managed instance group"),
            "node_service_account_email": (self.nodes.service_account.email, "E-mail of the GPU nodes' service account"),
        }
        for name, (value, description) in outputs.items():
            TerraformOutput(self, name, value=value, description=description)
