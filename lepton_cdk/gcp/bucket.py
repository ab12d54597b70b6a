"""A Cloud Storage bucket for model artifacts, and the artifacts of one model version in it.

The mirror image of :mod:`lepton_cdk.aws.bucket`: the same public names (``docs/vocabulary.md``),
this cloud's resources. What repeats between the two modules is kept on purpose (aws/ and gcp/
never import each other); logic that is truly shared lives in ``lepton_cdk.core``.

Default settings (``ModelBucket``):
- Encryption at rest with a customer-managed Cloud KMS key (CMEK): a key
  ring (child ``"KeyRing"``) and a crypto key (``"Key"``) rotated every 90
  days, in the bucket's location. The Cloud Storage service agent gets
  ``roles/cloudkms.cryptoKeyEncrypterDecrypter`` on that key only
  (``"KeyAccess"``), and the bucket is created after that binding.
- Uniform bucket-level access (no object ACLs) and public access
  prevention ``enforced``.
- Object versioning on.
- Location: the provider's region. Name: ``<project id>-models-<8 hex>``.
- Lifecycle rules: an unfinished XML API multipart upload is aborted 7
  days after it started (``AbortIncompleteMultipartUpload``), and a version
  that is no longer live is deleted 90 days after it became noncurrent
  (``days_since_noncurrent_time``, ``with_state = "ARCHIVED"``; the live
  version is never deleted). ``noncurrent_version_expiration_days=None``
  keeps old versions forever.
- Usage (access) logs, ``logging { log_bucket, log_object_prefix = <bucket
  name> }``, into a dedicated log bucket created alongside (``"AccessLogs"``,
  an :class:`AccessLogBucket`). ``access_log_bucket=`` sends the logs to a
  bucket you already have; ``access_logging=False`` turns logging off.
- Retained on destroy: ``prevent_destroy`` on the bucket and the key. With
  ``retain_on_destroy=False`` the bucket is ``force_destroy``. Cloud KMS
  never deletes key rings and keeps keys (their versions are destroyed),
  so a re-deploy after a destroy needs a new ``key_ring_name``. The log
  bucket it creates follows the same setting.

Default settings (``AccessLogBucket``):
- Uniform bucket-level access, public access prevention ``enforced``,
  versioning on; encrypted with the model bucket's CMEK key when the model
  bucket creates it. Name: ``<project id>-access-logs-<8 hex>``.
- ``group:cloud-storage-analytics@google.com`` (the writer of usage logs)
  gets ``roles/storage.objectCreator`` on it (child ``"LogWriter"``).
- Logs are deleted 365 days after they are written, and the versions this
  leaves behind 30 days later; unfinished uploads are aborted after 7 days.
- Retained on destroy, like the model bucket.

Default settings (``ModelBucket.from_bucket_name``):
- Declares no bucket resources: it only names a bucket you already own, so
  you can upload artifacts into it and grant on it. Grants are the same as
  on a ``ModelBucket`` (GCP needs no key grant for CMEK); with
  ``kms_key_id`` uploads name that key explicitly.

Default settings (``ModelArtifacts``):
- The manifest's artifacts are re-hashed before anything is declared.
- Objects go under ``models/<model name>/<model version>/``, one
  ``google_storage_bucket_object`` per artifact, encrypted with the bucket's
  default key, with ``sha256`` / ``crc32c`` metadata copied from the
  manifest. (The manifest has no MD5 and none is invented; Cloud Storage
  computes its own crc32c and MD5 on upload.)
"""

from __future__ import annotations

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
from lepton_cdk.core.framework import Construct, Fn, TerraformResourceLifecycle, google
from lepton_cdk.core.interfaces import Grant, IGcsBucket, IGrantable, ModelObject
from lepton_cdk.core.model_layout import key_prefix_problems
from lepton_cdk.core.renames import RenamedAttribute, renamed_props
from lepton_cdk.core.validation import PropChecks

from .iam import member_principal
from .naming import stable_suffix

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
_KEY_RING_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")
_SECONDS_PER_DAY = 86400


def _bucket_name_problems(name: str) -> list[str]:
    if _BUCKET_NAME.match(name) and "google" not in name and not name.startswith("goog"):
        return []
    return [f"bucket_name={name!r} is not a valid Cloud Storage bucket name; use 3-63 lowercase letters, "
            "digits, '-' or '_', starting and ending with a letter or digit, without 'google'"]


def _lifecycle_rules(*, abort_incomplete_upload_days: int, age_days: int | None = None,
                     noncurrent_version_expiration_days: int | None) -> list[Any]:
    sb = google.storage_bucket
    rules = [sb.StorageBucketLifecycleRule(
        action=sb.StorageBucketLifecycleRuleAction(type="AbortIncompleteMultipartUpload"),
        condition=sb.StorageBucketLifecycleRuleCondition(age=abort_incomplete_upload_days),
    )]
    if age_days is not None:
        rules.append(sb.StorageBucketLifecycleRule(
            action=sb.StorageBucketLifecycleRuleAction(type="Delete"),
            condition=sb.StorageBucketLifecycleRuleCondition(age=age_days),
        ))
    if noncurrent_version_expiration_days is not None:
        rules.append(sb.StorageBucketLifecycleRule(
            action=sb.StorageBucketLifecycleRuleAction(type="Delete"),
            # ARCHIVED: only versions that are no longer live; the current version of a model is never deleted.
            condition=sb.StorageBucketLifecycleRuleCondition(days_since_noncurrent_time=noncurrent_version_expiration_days,
                                                             with_state="ARCHIVED"),
        ))
    return rules


class _GcsBucket(ArtifactUploads, Construct):
    """What every bucket here offers: object URIs, grants and artifact uploads (an :class:`~lepton_cdk.core.interfaces.IGcsBucket`).

    Subclasses provide ``bucket_name``, ``kms_key_id`` (the Cloud KMS key
    encrypting the bucket, when known) and ``object_kms_key_id`` (the key
    uploads name explicitly, or ``None`` for the bucket's default). The AWS
    mirror image is ``lepton_cdk.aws.bucket``: the same public names, each
    cloud's own resources.
    """

    cloud = "gcp"
    url_scheme = "gs"

    bucket_name: str
    kms_key_id: str | None
    object_kms_key_id: str | None

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self._grant_counts: dict[str, int] = {}  # per kind, so a second grant to one principal gets a distinct id

    def _grant(self, method: str, kind: str, role: str, permissions: tuple[str, ...], grantee: IGrantable, key_prefix: str) -> Grant:
        principal = member_principal(method, grantee)
        problems = key_prefix_problems("key_prefix", key_prefix) if key_prefix else []
        if problems:
            raise ConstructValidationError(self.node.path, problems)
        counts = self._grant_counts
        counts[kind] = counts.get(kind, 0) + 1
        resource_prefix = f"projects/_/buckets/{self.bucket_name}/objects/{key_prefix}"
        iam = google.storage_bucket_iam_member
        iam.StorageBucketIamMember(
            principal, f"{kind}-{self.node.id}" if counts[kind] == 1 else f"{kind}-{self.node.id}-{counts[kind]}",
            bucket=self.bucket_name,
            role=role,
            member=principal.member,
            condition=iam.StorageBucketIamMemberCondition(
                title=f"lepton-{kind.lower()}-model-prefix",
                description=f"{kind.lower()} objects under {key_prefix or '(whole bucket)'}"[:256],
                expression=f'resource.name.startsWith("{resource_prefix}")',
            ),
        )
        return Grant(grantee=principal.node.path, actions=permissions, resources=(resource_prefix + "*",))

    def grant_read(self, grantee: IGrantable, *, key_prefix: str = "") -> Grant:
        """Let ``grantee`` read objects under ``key_prefix`` only.

        Adds ``roles/storage.objectViewer`` on this bucket with an IAM
        condition ``resource.name.startsWith(".../objects/<key_prefix>")``
        (child ``"Read-<n>"`` of the grantee's principal). No key permission
        is needed: Cloud Storage decrypts CMEK objects with its own service agent.
        """
        return self._grant("grant_read", "Read", "roles/storage.objectViewer", ("storage.objects.get",), grantee, key_prefix)

    def grant_write(self, grantee: IGrantable, *, key_prefix: str = "") -> Grant:
        """Let ``grantee`` create objects under ``key_prefix`` only.

        Adds ``roles/storage.objectCreator`` (create objects and multipart
        uploads; no read, list, overwrite or delete) on this bucket with the
        same ``resource.name.startsWith(...)`` condition as :meth:`grant_read`
        (child ``"Write-<n>"`` of the grantee's principal). No key permission
        is needed: Cloud Storage encrypts CMEK objects with its own service agent.
        """
        return self._grant("grant_write", "Write", "roles/storage.objectCreator", ("storage.objects.create",), grantee, key_prefix)


class AccessLogBucket(_GcsBucket):
    """A private Cloud Storage bucket that receives usage logs (see the module docstring).

    Pass it as ``access_log_bucket=`` to several :class:`ModelBucket` s to
    keep their logs in one place. Implements :class:`lepton_cdk.core.IBucket`.
    """

    @renamed_props(kms_key_name="kms_key_id")
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        location: str | None = None,
        retention_days: int = DEFAULT_ACCESS_LOG_RETENTION_DAYS,
        retain_on_destroy: bool = True,
        kms_key_id: str | None = None,
        depends_on: list | None = None,
    ) -> None:
        """Create the log bucket and Cloud Storage's permission to write logs into it.

        :param location: as for :class:`ModelBucket`. Default: the provider's region.
        :param retention_days: days a log object is kept. Default: 365.
        :param retain_on_destroy: refuse to destroy the bucket. Default:
            retained (``prevent_destroy``); ``False`` makes it ``force_destroy``.
        :param kms_key_id: a Cloud KMS key the Cloud Storage service agent
            may already use. Default: Google-managed encryption.
        :param depends_on: resources to create first (the key grant, with ``kms_key_id``).
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        checks.int_range("retention_days", retention_days, minimum=1, maximum=36500,
                         fix="logs are deleted that many days after they are written")
        checks.raise_if_any()

        self._kms_key_id = kms_key_id
        self.client = google.data_google_client_config.DataGoogleClientConfig(self, "Client")
        sb = google.storage_bucket
        self.resource = sb.StorageBucket(
            self, "Resource",
            name=f"{self.client.project}-access-logs-{stable_suffix(self)}",
            location=location if location is not None else Fn.upper(self.client.region),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=sb.StorageBucketVersioning(enabled=True),
            encryption=sb.StorageBucketEncryption(default_kms_key_name=kms_key_id) if kms_key_id else None,
            lifecycle_rule=_lifecycle_rules(abort_incomplete_upload_days=DEFAULT_ABORT_INCOMPLETE_UPLOAD_DAYS, age_days=retention_days,
                                            noncurrent_version_expiration_days=ACCESS_LOG_NONCURRENT_DAYS),
            force_destroy=not retain_on_destroy,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if retain_on_destroy else None,
            depends_on=depends_on or None,
        )
        # Usage logs are written by this Google group; with uniform access it needs an IAM binding, not an ACL.
        self.log_writer = google.storage_bucket_iam_member.StorageBucketIamMember(
            self, "LogWriter",
            bucket=self.resource.name,
            role="roles/storage.objectCreator",
            member="group:cloud-storage-analytics@google.com",
        )

    @property
    def bucket_name(self) -> str:
        """The log bucket's name."""
        return self.resource.name

    @property
    def kms_key_id(self) -> str | None:
        """The Cloud KMS key given as ``kms_key_id``, or ``None`` (Google-managed encryption)."""
        return self._kms_key_id

    @property
    def object_kms_key_id(self) -> None:
        """Always ``None``: objects use the bucket's default encryption."""
        return None


class ImportedModelBucket(_GcsBucket):
    """A bucket you already own, named to upload into and grant on; declares no bucket resources.

    Made by :meth:`ModelBucket.from_bucket_name`. Implements :class:`lepton_cdk.core.IBucket`.
    """

    @renamed_props(kms_key_name="kms_key_id")
    def __init__(self, scope: Construct, id: str, *, bucket_name: str, kms_key_id: str | None = None) -> None:
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        if checks.known(bucket_name):
            checks.add(*_bucket_name_problems(bucket_name))
        checks.raise_if_any()
        self._bucket_name = bucket_name
        self._kms_key_id = kms_key_id

    @property
    def bucket_name(self) -> str:
        """The bucket's name, as given."""
        return self._bucket_name

    @property
    def kms_key_id(self) -> str | None:
        """The Cloud KMS key given to :meth:`ModelBucket.from_bucket_name`, or ``None``."""
        return self._kms_key_id

    @property
    def object_kms_key_id(self) -> str | None:
        """The same key: uploads name it explicitly, since this stack cannot see the bucket's default."""
        return self._kms_key_id


class ModelBucket(_GcsBucket):
    """A CMEK-encrypted, versioned, private Cloud Storage bucket for model artifacts.

    Implements :class:`lepton_cdk.core.IBucket`.
    """

    key_id = RenamedAttribute("kms_key_id")

    @classmethod
    @renamed_props(kms_key_name="kms_key_id")
    def from_bucket_name(cls, scope: Construct, id: str, bucket_name: str, *, kms_key_id: str | None = None) -> ImportedModelBucket:
        """Name a bucket that already exists, to upload artifacts into it and grant on it.

        Declares no bucket, key or binding: the bucket's settings stay
        whatever they are.

        :param bucket_name: the existing bucket's name.
        :param kms_key_id: the Cloud KMS key (``projects/.../cryptoKeys/...``)
            uploads are encrypted with; the project's Cloud Storage service
            agent must already be allowed to use it. Default: uploads use the
            bucket's default encryption. Grants never need a key permission on
            GCP (the service agent encrypts and decrypts), so they are the same
            either way.
        """
        return ImportedModelBucket(scope, id, bucket_name=bucket_name, kms_key_id=kms_key_id)

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bucket_name: str | None = None,
        location: str | None = None,
        versioned: bool = True,
        retain_on_destroy: bool = True,
        key_ring_name: str | None = None,
        key_rotation_period_days: int = 90,
        abort_incomplete_upload_days: int = DEFAULT_ABORT_INCOMPLETE_UPLOAD_DAYS,
        noncurrent_version_expiration_days: int | None = DEFAULT_NONCURRENT_VERSION_EXPIRATION_DAYS,
        access_logging: bool = True,
        access_log_bucket: IGcsBucket | None = None,
        access_log_retention_days: int = DEFAULT_ACCESS_LOG_RETENTION_DAYS,
    ) -> None:
        """Create the bucket, its KMS key ring and key, the service agent's access to the key, and its log bucket.

        :param bucket_name: globally unique bucket name. Default:
            ``<project id>-models-<8 hex>`` (project ids are globally unique).
        :param location: a region (``us-central1``) or multi-region (``US``).
            Default: the provider's region. The key ring is created in the same location.
        :param versioned: keep every version of every object. Default: on.
        :param retain_on_destroy: refuse to destroy the bucket and key.
            Default: retained (``prevent_destroy``); ``False`` lets
            ``terraform destroy`` empty and delete the bucket.
        :param key_ring_name: the KMS key ring's name. Default: ``lepton-models-<8 hex>``.
        :param key_rotation_period_days: days between automatic key
            rotations (1-36500). Default: 90.
        :param abort_incomplete_upload_days: days after which an unfinished
            XML API multipart upload is aborted and its parts deleted. Default: 7.
        :param noncurrent_version_expiration_days: days after an object
            version is overwritten or deleted before Cloud Storage deletes it
            for good. Default: 90; ``None`` keeps old versions forever.
        :param access_logging: record Cloud Storage usage logs. Default: on,
            into ``access_log_bucket``.
        :param access_log_bucket: where the usage logs go, named
            ``<bucket name>_usage_...``; ``group:cloud-storage-analytics@google.com``
            must be allowed to create objects in it (an :class:`AccessLogBucket`
            does that). Default: a new :class:`AccessLogBucket` (child
            ``"AccessLogs"``) in the same location, encrypted with this
            bucket's key, that follows ``retain_on_destroy``.
        :param access_log_retention_days: days the new log bucket keeps each
            log. Default: 365. Unused when ``access_log_bucket`` is given.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        if bucket_name is not None and checks.known(bucket_name):
            checks.add(*_bucket_name_problems(bucket_name))
        if key_ring_name is not None and checks.known(key_ring_name):
            checks.require(bool(_KEY_RING_NAME.match(key_ring_name)),
                           f"key_ring_name={key_ring_name!r} is not a valid key ring name; use 1-63 letters, digits, '-' or '_'")
        checks.int_range("key_rotation_period_days", key_rotation_period_days, minimum=1, maximum=36500,
                         fix="Cloud KMS rotates at most daily and at least every 100 years")
        check_retention_props(
            checks,
            abort_incomplete_upload_days=abort_incomplete_upload_days,
            noncurrent_version_expiration_days=noncurrent_version_expiration_days,
            access_logging=access_logging,
            access_log_bucket=access_log_bucket,
            access_log_retention_days=access_log_retention_days,
            cloud="gcp",
        )
        checks.raise_if_any()

        self.retain_on_destroy = retain_on_destroy
        lifecycle = TerraformResourceLifecycle(prevent_destroy=True) if retain_on_destroy else None
        suffix = stable_suffix(self)
        self.client = google.data_google_client_config.DataGoogleClientConfig(self, "Client")
        bucket_location = location if location is not None else Fn.upper(self.client.region)
        self.storage_agent = google.data_google_storage_project_service_account.DataGoogleStorageProjectServiceAccount(self, "StorageAgent")

        self.key_ring = google.kms_key_ring.KmsKeyRing(
            self, "KeyRing", name=key_ring_name or f"lepton-models-{suffix}", location=Fn.lower(bucket_location),
        )
        self.encryption_key = google.kms_crypto_key.KmsCryptoKey(
            self, "Key",
            name="model-artifacts",
            key_ring=self.key_ring.id,
            purpose="ENCRYPT_DECRYPT",
            rotation_period=f"{key_rotation_period_days * _SECONDS_PER_DAY}s",
            lifecycle=lifecycle,
        )
        self.key_access = google.kms_crypto_key_iam_member.KmsCryptoKeyIamMember(
            self, "KeyAccess",
            crypto_key_id=self.encryption_key.id,
            role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
            member=f"serviceAccount:{self.storage_agent.email_address}",
        )
        name = bucket_name or f"{self.client.project}-models-{suffix}"
        self.access_log_bucket: IGcsBucket | None = None
        if access_logging and access_log_bucket is None:
            access_log_bucket = AccessLogBucket(
                self, "AccessLogs", location=bucket_location, retention_days=access_log_retention_days,
                retain_on_destroy=retain_on_destroy, kms_key_id=self.encryption_key.id, depends_on=[self.key_access],
            )
        if access_logging:
            self.access_log_bucket = access_log_bucket
        sb = google.storage_bucket
        self.resource = sb.StorageBucket(
            self, "Resource",
            name=name,
            location=bucket_location,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=sb.StorageBucketVersioning(enabled=versioned),
            encryption=sb.StorageBucketEncryption(default_kms_key_name=self.encryption_key.id),
            lifecycle_rule=_lifecycle_rules(abort_incomplete_upload_days=abort_incomplete_upload_days,
                                            noncurrent_version_expiration_days=noncurrent_version_expiration_days),
            logging=sb.StorageBucketLogging(log_bucket=access_log_bucket.bucket_name, log_object_prefix=name)
            if access_log_bucket is not None else None,
            force_destroy=not retain_on_destroy,
            lifecycle=lifecycle,
            # Creating a CMEK bucket fails until the service agent may use the key.
            depends_on=[self.key_access],
        )

    # -- IBucket ---------------------------------------------------------------------------------------------
    @property
    def bucket_name(self) -> str:
        """The bucket's name."""
        return self.resource.name

    @property
    def bucket_url(self) -> str:
        """``gs://<bucket>``."""
        return self.resource.url

    @property
    def kms_key_id(self) -> str:
        """The crypto key's id (``projects/.../cryptoKeys/model-artifacts``)."""
        return self.encryption_key.id

    @property
    def object_kms_key_id(self) -> None:
        """``None``: objects use the bucket's default key."""
        return None


class ModelArtifacts(ModelArtifactsBase):
    """One model version's artifacts in a :class:`ModelBucket`, checked against its manifest.

    One ``google_storage_bucket_object`` per manifest artifact (child ``"Object-<name>"``), uploaded
    from a staged asset; every artifact is re-hashed first and a mismatch
    fails synth. Implements :class:`lepton_cdk.core.IModelArtifacts`.

    :param bucket: the bucket to upload into.
    :param manifest: a :class:`~lepton_cdk.contract.Manifest` read from disk,
        or the path of ``manifest.json`` (or its folder).
    :param key_prefix: where the objects go, ending in ``/``. Default:
        ``models/<model name>/<model version>/``; ``model_uri`` is then
        ``gs://<bucket>/models/<name>/<version>/model.onnx``.
    """

    def _declare_object(self, id: str, artifact: Artifact, obj: ModelObject, source: str) -> Any:
        return google.storage_bucket_object.StorageBucketObject(
            self, id,
            bucket=self.bucket.bucket_name,
            name=obj.key,
            kms_key_name=self.bucket.object_kms_key_id,
            source=source,
            content_type=artifact.media_type,
            metadata={"sha256": artifact.sha256, "crc32c": artifact.crc32c},
        )


# The buckets above upload into this class, defined after them because it takes them.
_GcsBucket.artifacts_class = ModelArtifacts
