"""What the AWS and GCP ``ModelArtifacts`` constructs share: verify the manifest,
check the layout, stage every artifact as a cdktf asset and describe the
stored objects. Each cloud declares only its own object resource. Also what
both clouds' buckets share to get there: object URIs and ``upload_artifacts``.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from lepton_cdk.contract import Artifact, Manifest, read_manifest

from .framework import AssetType, Construct, TerraformAsset
from .interfaces import Grant, IBucket, IGrantable, ModelObject
from .model_layout import artifact_path_problems, default_key_prefix, key_prefix_problems, load_verified_manifest, model_objects
from .validation import PropChecks


class ModelArtifactsBase(Construct):
    """One model version's artifacts in a bucket, checked against its manifest.

    Subclasses implement :meth:`_declare_object`. Children per artifact:
    ``"Asset-<name>"`` (the staged file) and ``"Object-<name>"`` (the object).
    """

    def __init__(self, scope: Construct, id: str, *, bucket: IBucket,
                 manifest: Manifest | str | os.PathLike[str], key_prefix: str | None = None) -> None:
        super().__init__(scope, id)
        verified = load_verified_manifest(manifest)
        prefix = default_key_prefix(verified) if key_prefix is None else key_prefix
        checks = PropChecks(self.node.path)
        checks.add(*key_prefix_problems("key_prefix", prefix), *artifact_path_problems(verified))
        checks.raise_if_any()

        self.manifest = verified
        self._bucket = bucket
        self._key_prefix = prefix
        self._objects = model_objects(verified, prefix, bucket.url_for_object)
        self.object_resources: dict[str, Any] = {}
        for art, obj in zip(verified.artifacts, self._objects, strict=True):
            # Staged into cdktf.out, so the synthesized stack is self-contained and applies on another machine;
            # artifact_file is the contract's resolution, so nothing outside the manifest's folder is staged.
            asset = TerraformAsset(self, f"Asset-{art.name}", path=str(verified.artifact_file(art)), type=AssetType.FILE)
            self.object_resources[art.name] = self._declare_object(f"Object-{art.name}", art, obj, asset.path)

    def _declare_object(self, id: str, artifact: Artifact, obj: ModelObject, source: str) -> Any:
        """Declare the cloud's object resource for ``artifact`` (child ``id``) uploading ``source``."""
        raise NotImplementedError

    @property
    def bucket(self) -> IBucket:
        """The bucket holding the artifacts."""
        return self._bucket

    @property
    def key_prefix(self) -> str:
        """The key prefix every artifact shares, ending in ``/``."""
        return self._key_prefix

    @property
    def objects(self) -> tuple[ModelObject, ...]:
        """Every artifact as stored, in manifest order."""
        return self._objects

    @property
    def model_object(self) -> ModelObject:
        """The primary artifact (the ONNX file a server loads)."""
        return next(o for o in self._objects if o.name == self.manifest.primary_artifact)

    @property
    def model_uri(self) -> str:
        """``s3://`` / ``gs://`` URI of the primary artifact."""
        return self.model_object.uri

    @property
    def model_sha256(self) -> str:
        """The primary artifact's sha256 from the manifest."""
        return self.model_object.sha256

    @property
    def prefix_uri(self) -> str:
        """URI of the folder holding every artifact of this version."""
        return self._bucket.url_for_object(self._key_prefix)

    def grant_read(self, grantee: IGrantable) -> Grant:
        """Let ``grantee`` read this version's objects (and nothing else in the bucket)."""
        return self._bucket.grant_read(grantee, key_prefix=self._key_prefix)


class ArtifactUploads:
    """Mixed into both clouds' bucket constructs: object URIs and :meth:`upload_artifacts`.

    A bucket class sets ``url_scheme`` (``"s3"`` / ``"gs"``) and
    ``artifacts_class`` (its cloud's ``ModelArtifacts``) and provides ``bucket_name``.
    """

    url_scheme: ClassVar[str]
    artifacts_class: ClassVar[type[ModelArtifactsBase]]
    bucket_name: str

    def url_for_object(self, key: str = "") -> str:
        """``s3://<bucket>/<key>`` on AWS, ``gs://<bucket>/<key>`` on GCP."""
        return f"{self.url_scheme}://{self.bucket_name}/{key}"

    def upload_artifacts(self, manifest: Manifest | str | os.PathLike[str], *, key_prefix: str | None = None) -> ModelArtifactsBase:
        """Upload a manifest's artifacts into this bucket (child ``"Artifacts-<model name>"``).

        :param manifest: a :class:`~lepton_cdk.contract.Manifest` read from
            disk, or the path of ``manifest.json`` (or its folder).
        :param key_prefix: where the objects go. Default: ``models/<name>/<version>/``.
        """
        # ModelArtifacts re-hashes every artifact; here only the model name is needed.
        loaded = manifest if isinstance(manifest, Manifest) else read_manifest(manifest, verify=False)
        return self.artifacts_class(self, f"Artifacts-{loaded.model_name}", bucket=self, manifest=loaded,  # type: ignore[arg-type]
                                    key_prefix=key_prefix)
