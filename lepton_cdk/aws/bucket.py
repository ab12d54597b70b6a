"""An S3 bucket for model artifacts, and the artifacts of one model version in it.

Default settings (``ModelBucket``):
- Encryption at rest with a new customer-managed KMS key (child ``"Key"``),
  rotated yearly, with an alias (``"KeyAlias"``, ``alias/lepton-models-...``);
  SSE-KMS is the bucket default and S3 Bucket Keys are on (fewer KMS calls).
- Versioning on: an overwritten or deleted artifact stays recoverable.
- All four public access block settings on; object ownership
  ``BucketOwnerEnforced`` (ACLs disabled).
- A bucket policy that denies every request not made over TLS
  (``aws:SecureTransport = false``); ``enforce_tls=False`` drops it, for an
  emulator served over plain HTTP only.
- Retained on destroy: ``prevent_destroy`` on the bucket and the key, so
  ``terraform destroy`` fails instead of deleting model data. With
  ``retain_on_destroy=False`` the bucket is ``force_destroy`` (emptied and
  deleted) and the key is scheduled for deletion after the deletion window.

Default settings (``ModelArtifacts``):
- The manifest's artifacts are re-hashed before anything is declared; a
  file that no longer matches fails synth with the contract's one-line error.
- Objects go under ``models/<model name>/<model version>/``, one
  ``aws_s3_object`` per artifact, SSE-KMS with the bucket's key, S3
  ``SHA256`` checksums on upload, and ``sha256`` / ``crc32c`` metadata
  copied from the manifest, so a reader can check a download without the
  manifest.
- Files are staged as cdktf assets (copied into ``cdktf.out``), so the
  synthesized stack is self-contained and can be applied on another machine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Any

from lepton_cdk.contract import Artifact, Manifest, read_manifest
from lepton_cdk.core.artifacts import ModelArtifactsBase
from lepton_cdk.core.errors import ConstructValidationError
from lepton_cdk.core.framework import Construct, TerraformResourceLifecycle, aws
from lepton_cdk.core.interfaces import Grant, IGrantable, ModelObject
from lepton_cdk.core.model_layout import (
    key_prefix_problems,
)
from lepton_cdk.core.validation import PropChecks

from .iam import PolicyStatement

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _bucket_name_problems(name: str) -> list[str]:
    problems = []
    if not _BUCKET_NAME.match(name):
        problems.append(
            f"bucket_name={name!r} is not a valid S3 bucket name; use 3-63 lowercase letters, digits, '-' or '.', "
            "starting and ending with a letter or digit"
        )
    if ".." in name or name.startswith("xn--") or name.endswith("-s3alias"):
        problems.append(f"bucket_name={name!r} uses a reserved form ('..', 'xn--' prefix or '-s3alias' suffix); choose another name")
    try:
        ipaddress.ip_address(name)
        problems.append(f"bucket_name={name!r} looks like an IP address; choose a name with letters")
    except ValueError:
        pass
    if "." in name:
        problems.append(f"bucket_name={name!r} contains '.', which breaks TLS for virtual-hosted requests; use '-' instead")
    return problems


class ModelBucket(Construct):
    """An encrypted, versioned, private S3 bucket for model artifacts.

    Implements :class:`lepton_cdk.core.IBucket`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bucket_name: str | None = None,
        versioned: bool = True,
        retain_on_destroy: bool = True,
        key_deletion_window_days: int = 30,
        enforce_tls: bool = True,
    ) -> None:
        """Create the bucket, its KMS key and its guard rails.

        :param bucket_name: the bucket's name. Default: Terraform generates a
            unique name starting with ``lepton-models-``.
        :param versioned: keep every version of every object. Default: on.
        :param retain_on_destroy: refuse to destroy the bucket and key.
            Default: retained (``prevent_destroy``); ``False`` lets
            ``terraform destroy`` empty and delete the bucket (tests, dev).
        :param key_deletion_window_days: days KMS waits before deleting the
            key once it is destroyed (7-30). Default: 30, the longest.
        :param enforce_tls: deny every request not made over TLS (bucket
            policy, child ``"Policy"``). Default: on. Turn it off only for an
            S3 emulator served over plain HTTP, which such a policy locks out.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        if bucket_name is not None and checks.known(bucket_name):
            checks.add(*_bucket_name_problems(bucket_name))
        checks.int_range("key_deletion_window_days", key_deletion_window_days, minimum=7, maximum=30,
                         fix="KMS accepts 7 to 30 days")
        checks.raise_if_any()

        self.retain_on_destroy = retain_on_destroy
        lifecycle = TerraformResourceLifecycle(prevent_destroy=True) if retain_on_destroy else None

        self.encryption_key = aws.kms_key.KmsKey(
            self, "Key",
            description=f"lepton-cdk model artifacts ({self.node.path})",
            enable_key_rotation=True,
            deletion_window_in_days=key_deletion_window_days,
            lifecycle=lifecycle,
        )
        self.key_alias = aws.kms_alias.KmsAlias(
            self, "KeyAlias", name_prefix="alias/lepton-models-", target_key_id=self.encryption_key.key_id,
        )
        self.resource = aws.s3_bucket.S3Bucket(
            self, "Resource",
            bucket=bucket_name,
            bucket_prefix=None if bucket_name else "lepton-models-",
            force_destroy=not retain_on_destroy,
            lifecycle=lifecycle,
        )
        bucket_id = self.resource.id
        self.versioning = aws.s3_bucket_versioning.S3BucketVersioningA(
            self, "Versioning",
            bucket=bucket_id,
            versioning_configuration=aws.s3_bucket_versioning.S3BucketVersioningVersioningConfiguration(
                status="Enabled" if versioned else "Suspended",
            ),
        )
        sse = aws.s3_bucket_server_side_encryption_configuration
        self.encryption = sse.S3BucketServerSideEncryptionConfigurationA(
            self, "Encryption",
            bucket=bucket_id,
            rule=[sse.S3BucketServerSideEncryptionConfigurationRuleA(
                apply_server_side_encryption_by_default=sse.S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                    sse_algorithm="aws:kms", kms_master_key_id=self.encryption_key.arn,
                ),
                bucket_key_enabled=True,
            )],
        )
        self.public_access_block = aws.s3_bucket_public_access_block.S3BucketPublicAccessBlock(
            self, "PublicAccessBlock",
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )
        self.ownership_controls = aws.s3_bucket_ownership_controls.S3BucketOwnershipControls(
            self, "OwnershipControls",
            bucket=bucket_id,
            rule=aws.s3_bucket_ownership_controls.S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
        )
        self.policy = None
        if enforce_tls:
            tls_only = {
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [self.resource.arn, f"{self.resource.arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }],
            }
            self.policy = aws.s3_bucket_policy.S3BucketPolicy(
                self, "Policy",
                bucket=bucket_id,
                policy=json.dumps(tls_only, separators=(",", ":")),
                # S3 rejects a policy change while the public access block is being written.
                depends_on=[self.public_access_block],
            )

    # -- IBucket ---------------------------------------------------------------------------------------------
    @property
    def bucket_name(self) -> str:
        """The bucket's name."""
        return self.resource.bucket

    @property
    def bucket_arn(self) -> str:
        """The bucket's ARN."""
        return self.resource.arn

    @property
    def bucket_region(self) -> str:
        """The region the bucket lives in."""
        return self.resource.region

    @property
    def key_arn(self) -> str:
        """The ARN of the KMS key that encrypts every object."""
        return self.encryption_key.arn

    @property
    def object_dependencies(self) -> list:
        """Resources that must exist before an object is written (encryption, access block, policy)."""
        guards = [self.encryption, self.public_access_block, self.ownership_controls]
        return guards + ([self.policy] if self.policy is not None else [])

    def url_for_object(self, key: str = "") -> str:
        """``s3://<bucket>/<key>``."""
        return f"s3://{self.bucket_name}/{key}"

    def arn_for_objects(self, key_pattern: str) -> str:
        """The ARN of the objects matching ``key_pattern`` (``models/*``)."""
        return f"{self.bucket_arn}/{key_pattern}"

    def grant_read(self, grantee: IGrantable, *, key_prefix: str = "") -> Grant:
        """Let ``grantee`` read objects under ``key_prefix``, and decrypt them through S3 only.

        Adds ``s3:GetObject`` on ``<bucket arn>/<key_prefix>*`` and
        ``kms:Decrypt`` on the bucket key with ``kms:ViaService`` pinned to
        S3 in the bucket's region. No ``s3:ListBucket``: a reader needs the
        key, which the manifest gives it.
        """
        principal = getattr(grantee, "grant_principal", None)
        if principal is None or not hasattr(principal, "add_to_principal_policy"):
            raise TypeError(
                f"grant_read needs a grantee with an IAM grant_principal (a GpuNodeGroup or ServiceRole), got {type(grantee).__name__}"
            )
        problems = key_prefix_problems("key_prefix", key_prefix) if key_prefix else []
        if problems:
            raise ConstructValidationError(self.node.path, problems)
        objects_arn = self.arn_for_objects(f"{key_prefix}*")
        principal.add_to_principal_policy(PolicyStatement(actions=["s3:GetObject"], resources=[objects_arn]))
        principal.add_to_principal_policy(PolicyStatement(
            actions=["kms:Decrypt"],
            resources=[self.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{self.bucket_region}.amazonaws.com"}},
        ))
        return Grant(grantee=principal.node.path, actions=("s3:GetObject", "kms:Decrypt"), resources=(objects_arn, self.key_arn))

    def upload_artifacts(self, manifest: Manifest | str | os.PathLike[str], *, key_prefix: str | None = None) -> ModelArtifacts:
        """Upload a manifest's artifacts into this bucket (child ``"Artifacts-<model name>"``).

        :param manifest: a :class:`~lepton_cdk.contract.Manifest` read from
            disk, or the path of ``manifest.json`` (or its folder).
        :param key_prefix: where the objects go. Default: ``models/<name>/<version>/``.
        """
        # ModelArtifacts re-hashes every artifact; here only the model name is needed.
        loaded = manifest if isinstance(manifest, Manifest) else read_manifest(manifest, verify=False)
        return ModelArtifacts(self, f"Artifacts-{loaded.model_name}", bucket=self, manifest=loaded, key_prefix=key_prefix)


class ModelArtifacts(ModelArtifactsBase):
    """One model version's artifacts in a :class:`ModelBucket`, checked against its manifest.

    One ``aws_s3_object`` per manifest artifact (child ``"Object-<name>"``), uploaded
    from a staged asset; every artifact is re-hashed first and a mismatch
    fails synth. Implements :class:`lepton_cdk.core.IModelArtifacts`.

    :param bucket: the bucket to upload into.
    :param manifest: a :class:`~lepton_cdk.contract.Manifest` read from disk,
        or the path of ``manifest.json`` (or its folder).
    :param key_prefix: where the objects go, ending in ``/``. Default:
        ``models/<model name>/<model version>/``; ``model_uri`` is then
        ``s3://<bucket>/models/<name>/<version>/model.onnx``.
    """

    def _declare_object(self, id: str, artifact: Artifact, obj: ModelObject, source: str) -> Any:
        return aws.s3_object.S3Object(
            self, id,
            bucket=self.bucket.resource.id,
            key=obj.key,
            source=source,
            # Terraform cannot use the ETag of an SSE-KMS object to spot a changed file; the manifest's sha256 can.
            source_hash=artifact.sha256,
            checksum_algorithm="SHA256",
            content_type=artifact.media_type,
            metadata={"sha256": artifact.sha256, "crc32c": artifact.crc32c},
            server_side_encryption="aws:kms",
            kms_key_id=self.bucket.key_arn,
            bucket_key_enabled=True,
            depends_on=self.bucket.object_dependencies,
        )
