"""A Cloud Storage bucket for model artifacts, and the artifacts of one model version in it.

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
- Retained on destroy: ``prevent_destroy`` on the bucket and the key. With
  ``retain_on_destroy=False`` the bucket is ``force_destroy``. Cloud KMS
  never deletes key rings and keeps keys (their versions are destroyed),
  so a re-deploy after a destroy needs a new ``key_ring_name``.

Default settings (``ModelArtifacts``):
- The manifest's artifacts are re-hashed before anything is declared.
- Objects go under ``models/<model name>/<model version>/``, one
  ``google_storage_bucket_object`` per artifact, encrypted with the bucket's
  default key, with ``sha256`` / ``crc32c`` metadata copied from the
  manifest. (The manifest has no MD5 and none is invented; Cloud Storage
  computes its own crc32c and MD5 on upload.)
"""

from __future__ import annotations

import os
import re
from typing import Any

from lepton_cdk.contract import Artifact, Manifest, read_manifest
from lepton_cdk.core.artifacts import ModelArtifactsBase
from lepton_cdk.core.errors import ConstructValidationError
from lepton_cdk.core.framework import Construct, Fn, TerraformResourceLifecycle, google
from lepton_cdk.core.interfaces import Grant, IGrantable, ModelObject
from lepton_cdk.core.model_layout import (
    key_prefix_problems,
)
from lepton_cdk.core.validation import PropChecks

from .naming import stable_suffix

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
_KEY_RING_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")
_SECONDS_PER_DAY = 86400


class ModelBucket(Construct):
    """A CMEK-encrypted, versioned, private Cloud Storage bucket for model artifacts.

    Implements :class:`lepton_cdk.core.IBucket`.
    """

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
    ) -> None:
        """Create the bucket, its KMS key ring and key, and the service agent's access to the key.

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
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        if bucket_name is not None and checks.known(bucket_name):
            checks.require(bool(_BUCKET_NAME.match(bucket_name)) and "google" not in bucket_name and not bucket_name.startswith("goog"),
                           f"bucket_name={bucket_name!r} is not a valid Cloud Storage bucket name; use 3-63 lowercase letters, "
                           "digits, '-' or '_', starting and ending with a letter or digit, without 'google'")
        if key_ring_name is not None and checks.known(key_ring_name):
            checks.require(bool(_KEY_RING_NAME.match(key_ring_name)),
                           f"key_ring_name={key_ring_name!r} is not a valid key ring name; use 1-63 letters, digits, '-' or '_'")
        checks.int_range("key_rotation_period_days", key_rotation_period_days, minimum=1, maximum=36500,
                         fix="Cloud KMS rotates at most daily and at least every 100 years")
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
        sb = google.storage_bucket
        self.resource = sb.StorageBucket(
            self, "Resource",
            name=bucket_name or f"{self.client.project}-models-{suffix}",
            location=bucket_location,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=sb.StorageBucketVersioning(enabled=versioned),
            encryption=sb.StorageBucketEncryption(default_kms_key_name=self.encryption_key.id),
            force_destroy=not retain_on_destroy,
            lifecycle=lifecycle,
            # Creating a CMEK bucket fails until the service agent may use the key.
            depends_on=[self.key_access],
        )
        self._read_grants = 0

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
    def key_id(self) -> str:
        """The crypto key's id (``projects/.../cryptoKeys/model-artifacts``)."""
        return self.encryption_key.id

    def url_for_object(self, key: str = "") -> str:
        """``gs://<bucket>/<key>``."""
        return f"gs://{self.bucket_name}/{key}"

    def grant_read(self, grantee: IGrantable, *, key_prefix: str = "") -> Grant:
        """Let ``grantee`` read objects under ``key_prefix`` only.

        Adds ``roles/storage.objectViewer`` on this bucket with an IAM
        condition ``resource.name.startsWith(".../objects/<key_prefix>")``
        (child ``"Read-<n>"`` of the grantee's principal). No key permission
        is needed: Cloud Storage decrypts CMEK objects with its own service agent.
        """
        principal = getattr(grantee, "grant_principal", None)
        if principal is None or not hasattr(principal, "member"):
            raise TypeError(f"grant_read needs a grantee with a service account grant_principal (a GpuNodeGroup or ServiceAccount), got {type(grantee).__name__}")
        problems = key_prefix_problems("key_prefix", key_prefix) if key_prefix else []
        if problems:
            raise ConstructValidationError(self.node.path, problems)
        self._read_grants += 1
        resource_prefix = f"projects/_/buckets/{self.bucket_name}/objects/{key_prefix}"
        iam = google.storage_bucket_iam_member
        iam.StorageBucketIamMember(
            principal, f"Read-{self.node.id}" if self._read_grants == 1 else f"Read-{self.node.id}-{self._read_grants}",
            bucket=self.resource.name,
            role="roles/storage.objectViewer",
            member=principal.member,
            condition=iam.StorageBucketIamMemberCondition(
                title="lepton-read-model-prefix",
                description=f"read objects under {key_prefix or '(whole bucket)'}"[:256],
                expression=f'resource.name.startsWith("{resource_prefix}")',
            ),
        )
        return Grant(grantee=principal.node.path, actions=("storage.objects.get",), resources=(resource_prefix + "*",))

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
            bucket=self.bucket.resource.name,
            name=obj.key,
            source=source,
            content_type=artifact.media_type,
            metadata={"sha256": artifact.sha256, "crc32c": artifact.crc32c},
        )
