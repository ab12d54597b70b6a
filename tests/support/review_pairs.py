"""Base/head pairs of the infra app's AWS stack for `lepton review`: what a pull request changes.

Every pair starts from one base: the reference AWS stack (a MigrationTarget
with the SageMaker endpoint on ``ml.g4dn.xlarge``, which moto accepts) plus an
``ArchiveKey``, a KMS key a user added beside it. Each head changes one thing,
through the same settings a user has (``LEPTON_*`` via
:meth:`InfraConfig.from_env`) or, where no setting exists, a one-line change
to the built stack:

==================  ====================================================================
pair                head
==================  ====================================================================
bucket-rename       the model bucket's name prefix changes (``acme-models-``): a rename
node-count          ``LEPTON_NODE_COUNT=3``
key-deletion        the ``ArchiveKey`` is removed
sagemaker-type      ``LEPTON_SAGEMAKER_TYPE=ml.g4dn.2xlarge``
transfer-added      ``LEPTON_SOURCE_URI=gs://acme-raw/tables/`` (a DataSync copy and its data bucket)
==================  ====================================================================

Synthesized in-process (``build_app`` + the policy Aspect, exactly what
``python -m infra`` runs), so a test can synthesize several heads in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from tests.support.manifests import write_fake_manifest

STACK = "lepton-aws"
ARCHIVE_KEY_ID = "ArchiveKey"
AGENT_ARN = "arn:aws:datasync:us-east-1:123456789012:agent/agent-0123456789abcdef0"
HMAC_SECRET_ID = "lepton/gcs-hmac"

BASE_SETTINGS = {
    "LEPTON_TARGET": "aws", "LEPTON_RETAIN_DATA": "false", "LEPTON_MANAGED_ENDPOINT": "true",
    "LEPTON_SAGEMAKER_TYPE": "ml.g4dn.xlarge",
}
# Each head: (settings on top of the base's, keep the ArchiveKey, the model bucket's name prefix).
PAIRS: dict[str, tuple[dict[str, str], bool, str | None]] = {
    "bucket-rename": ({}, True, "acme-models-"),
    "node-count": ({"LEPTON_NODE_COUNT": "3"}, True, None),
    "key-deletion": ({}, False, None),
    "sagemaker-type": ({"LEPTON_SAGEMAKER_TYPE": "ml.g4dn.2xlarge"}, True, None),
    "transfer-added": ({"LEPTON_SOURCE_URI": "gs://acme-raw/tables/", "LEPTON_SOURCE_HMAC_SECRET": HMAC_SECRET_ID,
                        "LEPTON_DATASYNC_AGENTS": AGENT_ARN}, True, None),
}


def fixed_manifest(folder: Path) -> Path:
    """A manifest whose artifacts have fixed bytes, so two synths of it are byte-identical."""
    return write_fake_manifest(folder, files={"model": b"\x08\x07lepton-review-test-model" * 64,
                                              "preprocessing": b'{"mean": [0.0], "std": [1.0]}\n'})


def synth_stack(outdir: Path, manifest: Path, *, settings: Mapping[str, str], archive_key: bool = True,
                bucket_prefix: str | None = None) -> Path:
    """Synthesize the AWS stack with ``settings`` (``LEPTON_*``) into ``outdir``; returns ``outdir`` (a cdktf.out)."""
    from lepton_cdk.app.config import InfraConfig
    from lepton_cdk.app.main import build_app
    from lepton_cdk.checks.aspect import PolicyChecks
    from lepton_cdk.core.framework import aws

    # jsii resolves a relative outdir against its own working folder, not Python's: always pass an absolute one
    outdir, manifest = Path(outdir).resolve(), Path(manifest).resolve()
    config = InfraConfig.from_env({**BASE_SETTINGS, "LEPTON_MANIFEST": str(manifest), **settings})
    app = build_app(config, outdir)
    stack = app.node.find_child(STACK)
    if archive_key:
        key = aws.kms_key.KmsKey(stack, ARCHIVE_KEY_ID, description="archive of old model versions",
                                 enable_key_rotation=True, deletion_window_in_days=7)
        PolicyChecks.suppress(key, "LEP-RETAIN-1", reason="test stack: destroyed with the base it belongs to")
    if bucket_prefix is not None:
        stack.bucket.resource.bucket_prefix = bucket_prefix
    PolicyChecks.synth(app)
    return outdir


def synth_pair(root: Path, name: str, manifest: Path, *, base_settings: Mapping[str, str] | None = None) -> tuple[Path, Path]:
    """(base cdktf.out, head cdktf.out) of pair ``name`` under ``root``; ``base_settings`` apply to both."""
    extra, archive_key, prefix = PAIRS[name]
    shared = dict(base_settings or {})
    base = synth_stack(root / "base", manifest, settings=shared)
    head = synth_stack(root / name, manifest, settings={**shared, **extra}, archive_key=archive_key, bucket_prefix=prefix)
    return base, head


# What moto gets wrong, shown by every plan against a base applied there (real AWS shows none of it):
# - DescribeSecurityGroupRules drops the description of a rule that references a security group or a prefix list;
# - CreateModel drops EnableNetworkIsolation and returns an empty VpcConfig, so the SageMaker model is replaced,
#   and with it (and moto's empty DataCaptureConfig) the endpoint configuration, which updates the endpoint.
MOTO_DRIFT = {
    "aws_vpc_security_group_egress_rule.GpuNodes_SecurityGroupEgress_9EC3D488": "update",
    "aws_vpc_security_group_egress_rule.Serving_SecurityGroupEgress-0_C1029013": "update",
    "aws_vpc_security_group_ingress_rule.Serving_NodeIngress-0_AFA789EC": "update",
    "aws_sagemaker_model.SageMaker_Model_95160257": "replace",
    "aws_sagemaker_endpoint_configuration.SageMaker_EndpointConfig_07735855": "replace",
    "aws_sagemaker_endpoint.SageMaker_61DF4BF9": "update",
}


# The attributes moto reads back wrongly on resources a change replaces anyway: (address, attribute) -> what real AWS
# returns (what was sent), so the replacement is forced by the change alone, as against real AWS.
MOTO_READ_BACK = {
    ("aws_sagemaker_model.SageMaker_Model_95160257", "enable_network_isolation"): True,
    ("aws_sagemaker_model.SageMaker_Model_95160257", "vpc_config"): [],
    ("aws_sagemaker_endpoint_configuration.SageMaker_EndpointConfig_07735855", "data_capture_config"): [],
}


def sanitize_plan(doc: dict, drop: set[str]) -> dict:
    """A plan JSON cut to what the review reads, without the changes at ``drop`` (moto's drift), with
    :data:`MOTO_READ_BACK` undone and without the emulator's address: the golden bucket-rename plan is written
    with this from a real plan against moto."""
    keep = [json.loads(json.dumps(c)) for c in doc.get("resource_changes", [])
            if c["address"] not in drop and tuple(c["change"]["actions"]) not in (("no-op",), ("read",))]
    for c in keep:
        change = c["change"]
        for (address, attr), sent in MOTO_READ_BACK.items():
            if c["address"] == address and isinstance(change.get("before"), dict):
                change["before"][attr] = sent
                change["replace_paths"] = [p for p in change.get("replace_paths") or [] if p[0] != attr]
    resources = [{"address": r["address"], "mode": r["mode"], "type": r["type"], "name": r["name"],
                  "expressions": dict.fromkeys(r.get("expressions", {}), {})}
                 for r in doc["configuration"]["root_module"].get("resources", [])]
    region = doc["configuration"].get("provider_config", {}).get("aws", {}).get("expressions", {}).get("region")
    return {"format_version": doc["format_version"], "terraform_version": doc["terraform_version"], "resource_changes": keep,
            "configuration": {"provider_config": {"aws": {"name": "aws", "expressions": {"region": region}}},
                              "root_module": {"resources": resources}}}
