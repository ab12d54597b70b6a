"""An S3 bucket for model artifacts, and the artifacts of one model version in it.

The mirror image of :mod:`lepton_cdk.gcp.bucket`: the same public names (``docs/vocabulary.md``),
this cloud's resources. What repeats between the two modules is kept on purpose (aws/ and gcp/
never import each other); logic that is truly shared lives in ``lepton_cdk.core``.

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
- Lifecycle rules (child ``"Lifecycle"``): an unfinished multipart upload
  is aborted 7 days after it started (its parts otherwise cost storage
  forever), and an overwritten or deleted version is deleted 90 days after
  it stopped being current. ``noncurrent_version_expiration_days=None``
  keeps old versions forever.
- Server access logging (child ``"Logging"``) into a dedicated log bucket
  created alongside (``"AccessLogs"``, an :class:`AccessLogBucket`), under
  ``<bucket name>/``. ``access_log_bucket=`` sends the logs to a bucket you
  already have; ``access_logging=False`` turns logging off.
- Retained on destroy: ``prevent_destroy`` on the bucket and the key, so
  ``terraform destroy`` fails instead of deleting model data. With
  ``retain_on_destroy=False`` the bucket is ``force_destroy`` (emptied and
  deleted) and the key is scheduled for deletion after the deletion window.
  The log bucket it creates follows the same setting.

Default settings (``AccessLogBucket``):
- Private like the model bucket (public access block, ``BucketOwnerEnforced``,
  TLS-only policy, versioning on), but encrypted with SSE-S3 (``AES256``):
  S3 server access logging cannot deliver to a bucket whose default
  encryption is SSE-KMS.
- Its bucket policy lets the S3 logging service
  (``logging.s3.amazonaws.com``) of this account write objects, the
  policy-based grant AWS recommends (no ACLs).
- Logs expire 365 days after they are written; the versions this leaves
  behind are deleted 30 days later; unfinished uploads are aborted after 7 days.
- Retained on destroy, like the model bucket.

Default settings (``ModelBucket.from_bucket_name``):
- Declares no bucket resources: it only names a bucket you already own, so
  you can upload artifacts into it and grant on it. With ``kms_key_id`` (the
  key's ARN) the grants add the KMS permissions and uploads use SSE-KMS with
  that key; without it they rely on the bucket's own default encryption.

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
import re
from typing import Any

from lepton_cdk.contract import Artifact
from lepton_cdk.core.artifacts import ArtifactUploads, ModelArtifactsBase
from lepton_cdk.core.bucket_retention import (
    ACCESS_LOG_NONCURRENT_DAYS,
    DEFAULT_ABORT_INCOMPLETE_UPLOAD_DAYS,
    DEFAULT_ACCESS_LOG_RETENTION_DAYS,
    DEFAULT_NONCURRENT_VERSION_EXPIRATION_DAYS,
    check_retention_props,
)
from lepton_cdk.core.errors import ConstructValidationError
from lepton_cdk.core.framework import Construct, TerraformResourceLifecycle, aws
from lepton_cdk.core.interfaces import Grant, IAwsBucket, IGrantable, ModelObject
from lepton_cdk.core.model_layout import key_prefix_problems
from lepton_cdk.core.renames import RenamedAttribute, renamed_props
from lepton_cdk.core.validation import PropChecks

from .iam import PolicyStatement, iam_principal

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


def _tls_only_statement(bucket_arn: str) -> dict[str, Any]:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def _lifecycle_rules(*, abort_incomplete_upload_days: int, expiration_days: int | None = None,
                     noncurrent_version_expiration_days: int | None) -> list[Any]:
    lc = aws.s3_bucket_lifecycle_configuration
    # An empty filter applies a rule to every object (the provider warns when neither filter nor prefix is set).
    every_object = [lc.S3BucketLifecycleConfigurationRuleFilter(prefix="")]
    rules = [lc.S3BucketLifecycleConfigurationRule(
        id="abort-incomplete-multipart-uploads", status="Enabled", filter=every_object,
        abort_incomplete_multipart_upload=[lc.S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
            days_after_initiation=abort_incomplete_upload_days)],
    )]
    if expiration_days is not None:
        rules.append(lc.S3BucketLifecycleConfigurationRule(
            id="expire-objects", status="Enabled", filter=every_object,
            expiration=[lc.S3BucketLifecycleConfigurationRuleExpiration(days=expiration_days)],
        ))
    if noncurrent_version_expiration_days is not None:
        rules.append(lc.S3BucketLifecycleConfigurationRule(
            id="expire-noncurrent-versions", status="Enabled", filter=every_object,
            noncurrent_version_expiration=[lc.S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                noncurrent_days=noncurrent_version_expiration_days)],
        ))
    return rules


class _S3Bucket(ArtifactUploads, Construct):
    """What every bucket here offers: object URIs, grants and artifact uploads (an :class:`~lepton_cdk.core.interfaces.IAwsBucket`).

    Subclasses provide ``bucket_name``, ``bucket_id`` (what an object's
    ``bucket`` argument references), ``bucket_arn``, ``bucket_region``,
    ``kms_key_id`` (the key's ARN; ``None`` when no KMS key is known) and
    ``object_dependencies``. The GCP mirror image is ``lepton_cdk.gcp.bucket``:
    the same public names, each cloud's own resources.
    """

    cloud = "aws"
    url_scheme = "s3"
    key_arn = RenamedAttribute("kms_key_id")

    bucket_name: str
    bucket_id: str
    bucket_arn: str
    bucket_region: str
    kms_key_id: str | None
    object_dependencies: list

    def arn_for_objects(self, key_pattern: str) -> str:
        """The ARN of the objects matching ``key_pattern`` (``models/*``)."""
        return f"{self.bucket_arn}/{key_pattern}"

    def _grant(self, method: str, grantee: IGrantable, key_prefix: str, s3_actions: list[str], kms_actions: list[str]) -> Grant:
        principal = iam_principal(method, grantee)
        problems = key_prefix_problems("key_prefix", key_prefix) if key_prefix else []
        if problems:
            raise ConstructValidationError(self.node.path, problems)
        objects_arn = self.arn_for_objects(f"{key_prefix}*")
        principal.add_to_principal_policy(PolicyStatement(actions=s3_actions, resources=[objects_arn]))
        if self.kms_key_id is None:
            return Grant(grantee=principal.node.path, actions=tuple(s3_actions), resources=(objects_arn,))
        principal.add_to_principal_policy(PolicyStatement(
            actions=kms_actions,
            resources=[self.kms_key_id],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{self.bucket_region}.amazonaws.com"}},
        ))
        return Grant(grantee=principal.node.path, actions=(*s3_actions, *kms_actions), resources=(objects_arn, self.kms_key_id))

    def grant_read(self, grantee: IGrantable, *, key_prefix: str = "") -> Grant:
        """Let ``grantee`` read objects under ``key_prefix``, and decrypt them through S3 only.

        Adds ``s3:GetObject`` on ``<bucket arn>/<key_prefix>*`` and
        ``kms:Decrypt`` on the bucket key with ``kms:ViaService`` pinned to
        S3 in the bucket's region (no key statement when the bucket's key is
        not known). No ``s3:ListBucket``: a reader needs the key, which the
        manifest gives it.
        """
        return self._grant("grant_read", grantee, key_prefix, ["s3:GetObject"], ["kms:Decrypt"])

    def grant_write(self, grantee: IGrantable, *, key_prefix: str = "") -> Grant:
        """Let ``grantee`` write objects under ``key_prefix``, encrypting them through S3 only.

        Adds ``s3:PutObject`` and ``s3:AbortMultipartUpload`` on
        ``<bucket arn>/<key_prefix>*``, and ``kms:GenerateDataKey`` plus
        ``kms:Decrypt`` (a multipart upload decrypts its parts' data key to
        complete) on the bucket key with ``kms:ViaService`` pinned to S3 in
        the bucket's region (no key statement when the bucket's key is not
        known). No read, list or delete.
        """
        return self._grant("grant_write", grantee, key_prefix, ["s3:PutObject", "s3:AbortMultipartUpload"],
                           ["kms:GenerateDataKey", "kms:Decrypt"])


class _DeclaredS3Bucket(_S3Bucket):
    """A bucket this construct declares: its ``"Resource"`` and guard rails."""

    resource: Any
    encryption: Any
    public_access_block: Any
    ownership_controls: Any
    policy: Any

    def _version_and_encrypt(self, bucket_id: str, *, versioned: bool, sse_algorithm: str, kms_master_key_id: str | None = None,
                             bucket_key_enabled: bool | None = None) -> None:
        """Versioning (child ``"Versioning"``) and default encryption (``"Encryption"``) of the bucket."""
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
                    sse_algorithm=sse_algorithm, kms_master_key_id=kms_master_key_id,
                ),
                bucket_key_enabled=bucket_key_enabled,
            )],
        )

    def _block_public_access(self, bucket_id: str) -> None:
        """All four public access block settings on, and ACLs disabled (``BucketOwnerEnforced``)."""
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

    @property
    def bucket_name(self) -> str:
        """The bucket's name."""
        return self.resource.bucket

    @property
    def bucket_id(self) -> str:
        """The bucket's Terraform id (its name), what objects reference."""
        return self.resource.id

    @property
    def bucket_arn(self) -> str:
        """The bucket's ARN."""
        return self.resource.arn

    @property
    def bucket_region(self) -> str:
        """The region the bucket lives in."""
        return self.resource.region

    @property
    def object_dependencies(self) -> list:
        """Resources that must exist before an object is written (encryption, access block, ownership, policy)."""
        guards = [self.encryption, self.public_access_block, self.ownership_controls]
        return guards + ([self.policy] if self.policy is not None else [])


class AccessLogBucket(_DeclaredS3Bucket):
    """A private S3 bucket that receives S3 server access logs (SSE-S3, see the module docstring).

    Pass it as ``access_log_bucket=`` to several :class:`ModelBucket` s to
    keep their logs in one place; each writes under ``<bucket name>/``.
    Implements :class:`lepton_cdk.core.IBucket`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        retention_days: int = DEFAULT_ACCESS_LOG_RETENTION_DAYS,
        retain_on_destroy: bool = True,
        enforce_tls: bool = True,
    ) -> None:
        """Create the log bucket, its guard rails and the logging service's write access.

        :param retention_days: days a log object is kept. Default: 365.
        :param retain_on_destroy: refuse to destroy the bucket. Default:
            retained (``prevent_destroy``); ``False`` makes it ``force_destroy``.
        :param enforce_tls: deny every request not made over TLS. Default:
            on; off only for an S3 emulator served over plain HTTP.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        checks.int_range("retention_days", retention_days, minimum=1, maximum=36500,
                         fix="logs are deleted that many days after they are written")
        checks.raise_if_any()

        self.resource = aws.s3_bucket.S3Bucket(
            self, "Resource",
            bucket_prefix="lepton-access-logs-",
            force_destroy=not retain_on_destroy,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if retain_on_destroy else None,
        )
        bucket_id = self.resource.id
        # Server access log delivery fails into a bucket whose default encryption is SSE-KMS.
        self._version_and_encrypt(bucket_id, versioned=True, sse_algorithm="AES256")
        self._block_public_access(bucket_id)
        self.account = aws.data_aws_caller_identity.DataAwsCallerIdentity(self, "Account")
        statements: list[dict[str, Any]] = [{
            "Sid": "AllowS3ServerAccessLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{self.resource.arn}/*",
            # Only this account's buckets may deliver logs here.
            "Condition": {"StringEquals": {"aws:SourceAccount": self.account.account_id}},
        }]
        if enforce_tls:
            statements.append(_tls_only_statement(self.resource.arn))
        self.policy = aws.s3_bucket_policy.S3BucketPolicy(
            self, "Policy",
            bucket=bucket_id,
            policy=json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":")),
            depends_on=[self.public_access_block],
        )
        self.lifecycle_configuration = aws.s3_bucket_lifecycle_configuration.S3BucketLifecycleConfiguration(
            self, "Lifecycle",
            bucket=bucket_id,
            rule=_lifecycle_rules(abort_incomplete_upload_days=DEFAULT_ABORT_INCOMPLETE_UPLOAD_DAYS, expiration_days=retention_days,
                                  noncurrent_version_expiration_days=ACCESS_LOG_NONCURRENT_DAYS),
            # Lifecycle rules on versions need versioning in place first.
            depends_on=[self.versioning],
        )

    @property
    def kms_key_id(self) -> None:
        """Always ``None``: the log bucket uses SSE-S3, so grants need no key permission."""
        return None


class ImportedModelBucket(_S3Bucket):
    """A bucket you already own, named to upload into and grant on; declares no bucket resources.

    Made by :meth:`ModelBucket.from_bucket_name`. Implements :class:`lepton_cdk.core.IBucket`.
    """

    @renamed_props(key_arn="kms_key_id")
    def __init__(self, scope: Construct, id: str, *, bucket_name: str, kms_key_id: str | None = None) -> None:
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        if checks.known(bucket_name):
            checks.add(*_bucket_name_problems(bucket_name))
        checks.raise_if_any()
        self._bucket_name = bucket_name
        self._kms_key_id = kms_key_id
        self._partition: Any = None
        self._region: Any = None

    @property
    def bucket_name(self) -> str:
        """The bucket's name, as given."""
        return self._bucket_name

    @property
    def bucket_id(self) -> str:
        """The bucket's name (objects reference the bucket by name)."""
        return self._bucket_name

    @property
    def bucket_arn(self) -> str:
        """``arn:<partition>:s3:::<bucket>``, the partition read from the provider (data source ``"Partition"``)."""
        if self._partition is None:
            self._partition = aws.data_aws_partition.DataAwsPartition(self, "Partition")
        return f"arn:{self._partition.partition}:s3:::{self._bucket_name}"

    @property
    def bucket_region(self) -> str:
        """The provider's region (data source ``"Region"``): the bucket is assumed to live there."""
        if self._region is None:
            self._region = aws.data_aws_region.DataAwsRegion(self, "Region")
        return self._region.name

    @property
    def kms_key_id(self) -> str | None:
        """The KMS key ARN given to :meth:`ModelBucket.from_bucket_name`, or ``None``."""
        return self._kms_key_id

    @property
    def object_dependencies(self) -> list:
        """Nothing: the bucket and its guard rails exist outside this stack."""
        return []


class ModelBucket(_DeclaredS3Bucket):
    """An encrypted, versioned, private S3 bucket for model artifacts.

    Implements :class:`lepton_cdk.core.IBucket`.
    """

    @classmethod
    @renamed_props(key_arn="kms_key_id")
    def from_bucket_name(cls, scope: Construct, id: str, bucket_name: str, *, kms_key_id: str | None = None) -> ImportedModelBucket:
        """Name a bucket that already exists, to upload artifacts into it and grant on it.

        Declares no bucket, key or policy: the bucket's settings stay whatever
        they are. The bucket is assumed to be in the provider's region.

        :param bucket_name: the existing bucket's name.
        :param kms_key_id: the ARN of the KMS key that encrypts the bucket.
            Default: none known; ``grant_read`` / ``grant_write`` then grant S3
            permissions only (a grantee of an SSE-KMS bucket also needs the
            key, which you must then grant yourself), and uploads rely on the
            bucket's default encryption.
        """
        return ImportedModelBucket(scope, id, bucket_name=bucket_name, kms_key_id=kms_key_id)

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
        abort_incomplete_upload_days: int = DEFAULT_ABORT_INCOMPLETE_UPLOAD_DAYS,
        noncurrent_version_expiration_days: int | None = DEFAULT_NONCURRENT_VERSION_EXPIRATION_DAYS,
        access_logging: bool = True,
        access_log_bucket: IAwsBucket | None = None,
        access_log_retention_days: int = DEFAULT_ACCESS_LOG_RETENTION_DAYS,
    ) -> None:
        """Create the bucket, its KMS key, its guard rails, lifecycle rules and access logging.

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
        :param abort_incomplete_upload_days: days after which an unfinished
            multipart upload is aborted and its parts deleted. Default: 7.
        :param noncurrent_version_expiration_days: days after an object
            version is overwritten or deleted before S3 deletes it for good.
            Default: 90; ``None`` keeps old versions forever.
        :param access_logging: record S3 server access logs. Default: on,
            into ``access_log_bucket``.
        :param access_log_bucket: where the access logs go, under
            ``<bucket name>/``; it must already let ``logging.s3.amazonaws.com``
            write (an :class:`AccessLogBucket` does). Default: a new
            :class:`AccessLogBucket` (child ``"AccessLogs"``) that follows
            ``retain_on_destroy`` and ``enforce_tls``.
        :param access_log_retention_days: days the new log bucket keeps each
            log. Default: 365. Unused when ``access_log_bucket`` is given.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        if bucket_name is not None and checks.known(bucket_name):
            checks.add(*_bucket_name_problems(bucket_name))
        checks.int_range("key_deletion_window_days", key_deletion_window_days, minimum=7, maximum=30,
                         fix="KMS accepts 7 to 30 days")
        check_retention_props(
            checks,
            abort_incomplete_upload_days=abort_incomplete_upload_days,
            noncurrent_version_expiration_days=noncurrent_version_expiration_days,
            access_logging=access_logging,
            access_log_bucket=access_log_bucket,
            access_log_retention_days=access_log_retention_days,
            cloud="aws",
        )
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
        self._version_and_encrypt(bucket_id, versioned=versioned, sse_algorithm="aws:kms", kms_master_key_id=self.encryption_key.arn,
                                  bucket_key_enabled=True)
        self._block_public_access(bucket_id)
        self.policy = None
        if enforce_tls:
            self.policy = aws.s3_bucket_policy.S3BucketPolicy(
                self, "Policy",
                bucket=bucket_id,
                policy=json.dumps({"Version": "2012-10-17", "Statement": [_tls_only_statement(self.resource.arn)]},
                                  separators=(",", ":")),
                # S3 rejects a policy change while the public access block is being written.
                depends_on=[self.public_access_block],
            )
        self.lifecycle_configuration = aws.s3_bucket_lifecycle_configuration.S3BucketLifecycleConfiguration(
            self, "Lifecycle",
            bucket=bucket_id,
            rule=_lifecycle_rules(abort_incomplete_upload_days=abort_incomplete_upload_days,
                                  noncurrent_version_expiration_days=noncurrent_version_expiration_days),
            # Lifecycle rules on versions need versioning in place first.
            depends_on=[self.versioning],
        )

        self.access_log_bucket: IAwsBucket | None = None
        self.logging = None
        if access_logging:
            if access_log_bucket is None:
                access_log_bucket = AccessLogBucket(self, "AccessLogs", retention_days=access_log_retention_days,
                                                    retain_on_destroy=retain_on_destroy, enforce_tls=enforce_tls)
            self.access_log_bucket = access_log_bucket
            self.logging = aws.s3_bucket_logging.S3BucketLoggingA(
                self, "Logging",
                bucket=bucket_id,
                target_bucket=access_log_bucket.bucket_name,
                target_prefix=f"{self.bucket_name}/",
                # S3 checks the log bucket's policy when logging is turned on.
                depends_on=list(access_log_bucket.object_dependencies) or None,
            )

    @property
    def kms_key_id(self) -> str:
        """The ARN of the KMS key that encrypts every object."""
        return self.encryption_key.arn


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
            bucket=self.bucket.bucket_id,
            key=obj.key,
            source=source,
            # Terraform cannot use the ETag of an SSE-KMS object to spot a changed file; the manifest's sha256 can.
            source_hash=artifact.sha256,
            checksum_algorithm="SHA256",
            content_type=artifact.media_type,
            metadata={"sha256": artifact.sha256, "crc32c": artifact.crc32c},
            # Without a known key (an imported bucket), the bucket's default encryption applies.
            server_side_encryption=None if self.bucket.kms_key_id is None else "aws:kms",
            kms_key_id=self.bucket.kms_key_id,
            bucket_key_enabled=None if self.bucket.kms_key_id is None else True,
            depends_on=self.bucket.object_dependencies or None,
        )


# The buckets above upload into this class, defined after them because it takes them.
_S3Bucket.artifacts_class = ModelArtifacts
