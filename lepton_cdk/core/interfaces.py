"""Cloud-neutral contracts the AWS and GCP constructs both satisfy, and the cloud-specific ones they add.

They are :class:`typing.Protocol` classes, so a construct conforms by shape,
and code written against them (patterns, the review tool) works on either
cloud. Every one is ``runtime_checkable``: constructs check what they are
given with ``isinstance`` against these, never by guessing from attribute
names. Which cloud a bucket belongs to is stated by its ``cloud`` member
(:func:`is_bucket_of`), not inferred from the attributes it happens to have.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

CLOUDS = ("aws", "gcp")
BUCKET_KINDS = {"aws": "an S3 bucket", "gcp": "a Cloud Storage bucket"}
"""What each cloud's bucket is called, for messages."""


@runtime_checkable
class IGrantable(Protocol):
    """Anything that runs with an identity and can be granted access.

    ``grant_principal`` is the identity itself: an IAM role principal on AWS,
    a service account member on GCP.
    """

    @property
    def grant_principal(self) -> Any:
        """The identity that grants are given to."""
        ...


@runtime_checkable
class IAwsPrincipal(Protocol):
    """An IAM identity whose policy grows with each grant (:class:`lepton_cdk.aws.ServiceRole`)."""

    @property
    def node(self) -> Any:
        """The construct node (a grant records its path)."""
        ...

    def add_to_principal_policy(self, statement: Any) -> None:
        """Add one IAM policy statement to the identity's policy."""
        ...


@runtime_checkable
class IGcpPrincipal(Protocol):
    """A Google identity that IAM bindings name (:class:`lepton_cdk.gcp.ServiceAccount`)."""

    @property
    def node(self) -> Any:
        """The construct node (bindings are created under it)."""
        ...

    @property
    def member(self) -> str:
        """``serviceAccount:<email>``, the form IAM bindings take."""
        ...


def grant_principal_of(method: str, grantee: object, principal_type: Any, needs: str) -> Any:
    """``grantee.grant_principal`` when it is a ``principal_type`` (an :class:`IAwsPrincipal` or :class:`IGcpPrincipal`).

    Otherwise ``TypeError("<method> needs a grantee with <needs>, got <type>")``:
    a grant cannot be given to the other cloud's identity, or to something with none.
    """
    principal = grantee.grant_principal if isinstance(grantee, IGrantable) else None
    if not isinstance(principal, principal_type):
        raise TypeError(f"{method} needs a grantee with {needs}, got {type(grantee).__name__}")
    return principal


@runtime_checkable
class IHasId(Protocol):
    """A resource passed by reference: a subnet, security group, SSL certificate, notification channel ... (its ``.id``)."""

    @property
    def id(self) -> str:
        """The resource's id (a token until apply)."""
        ...


@runtime_checkable
class IHasArn(Protocol):
    """An AWS resource passed by reference: a target group, ACM certificate, SNS topic ... (its ``.arn``)."""

    @property
    def arn(self) -> str:
        """The resource's ARN (a token until apply)."""
        ...


@dataclass(frozen=True)
class Grant:
    """What a ``grant_*`` call gave: to whom, which actions, on what."""

    grantee: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]


@dataclass(frozen=True)
class ModelObject:
    """One manifest artifact as stored in a bucket."""

    name: str
    key: str  # object key inside the bucket
    uri: str  # s3://bucket/key or gs://bucket/key (the bucket may be a token)
    relative_path: str  # where it goes under the model directory on a node
    bytes: int
    sha256: str  # lowercase hex, from the manifest
    crc32c: str  # base64 big-endian, from the manifest


@runtime_checkable
class IBucket(Protocol):
    """An object store bucket that holds model artifacts."""

    @property
    def cloud(self) -> str:
        """``"aws"`` (an S3 bucket) or ``"gcp"`` (a Cloud Storage bucket): whose constructs can use it."""
        ...

    @property
    def bucket_name(self) -> str:
        """The bucket's name (a token until apply when Terraform names it)."""
        ...

    def url_for_object(self, key: str = "") -> str:
        """The ``s3://`` / ``gs://`` URI of ``key`` in this bucket."""
        ...

    def grant_read(self, grantee: IGrantable, *, key_prefix: str = "") -> Grant:
        """Let ``grantee`` read objects under ``key_prefix`` (and decrypt them)."""
        ...

    def grant_write(self, grantee: IGrantable, *, key_prefix: str = "") -> Grant:
        """Let ``grantee`` write objects under ``key_prefix`` (and encrypt them)."""
        ...

    def upload_artifacts(self, manifest: Any, *, key_prefix: str | None = None) -> IModelArtifacts:
        """Upload a manifest's artifacts into this bucket."""
        ...


@runtime_checkable
class IAwsBucket(IBucket, Protocol):
    """An S3 bucket: what ``lepton_cdk.aws`` constructs need beyond :class:`IBucket` (``cloud == "aws"``)."""

    @property
    def bucket_arn(self) -> str:
        """The bucket's ARN."""
        ...

    @property
    def bucket_region(self) -> str:
        """The region the bucket lives in."""
        ...

    @property
    def kms_key_id(self) -> str | None:
        """The ARN of the KMS key encrypting the bucket; ``None`` when none is known (grants then add no key permission)."""
        ...

    @property
    def object_dependencies(self) -> list:
        """Resources that must exist before an object is written into the bucket."""
        ...

    def arn_for_objects(self, key_pattern: str) -> str:
        """The ARN of the objects matching ``key_pattern``."""
        ...


@runtime_checkable
class IGcsBucket(IBucket, Protocol):
    """A Cloud Storage bucket: what ``lepton_cdk.gcp`` constructs need beyond :class:`IBucket` (``cloud == "gcp"``)."""

    @property
    def kms_key_id(self) -> str | None:
        """The Cloud KMS key encrypting the bucket, when known."""
        ...

    @property
    def object_kms_key_id(self) -> str | None:
        """The key uploads name explicitly; ``None`` when the bucket's default encryption applies."""
        ...


def is_bucket_of(value: object, cloud: str) -> bool:
    """True when ``value`` is an :class:`IBucket` whose ``cloud`` is ``cloud`` (``"aws"`` or ``"gcp"``).

    Only :class:`IBucket` is checked with ``isinstance``, not :class:`IAwsBucket`:
    on Python 3.11 ``isinstance`` against a Protocol reads every property it
    names, and an imported S3 bucket's ``bucket_arn`` declares a data source
    the first time it is read, which a type check must not do.
    """
    return isinstance(value, IBucket) and value.cloud == cloud


@runtime_checkable
class IModelArtifacts(Protocol):
    """A model's artifacts uploaded to a bucket, described by its manifest."""

    @property
    def bucket(self) -> IBucket:
        """Where the artifacts are stored."""
        ...

    @property
    def key_prefix(self) -> str:
        """The common key prefix, ending in ``/``."""
        ...

    @property
    def objects(self) -> tuple[ModelObject, ...]:
        """Every artifact, in manifest order."""
        ...

    @property
    def model_object(self) -> ModelObject:
        """The primary artifact (the one a server loads)."""
        ...

    def grant_read(self, grantee: IGrantable) -> Grant:
        """Let ``grantee`` read exactly these artifacts' prefix."""
        ...


@runtime_checkable
class IGpuNodeGroup(IGrantable, Protocol):
    """A group of GPU machines that fetch a model and (later) serve it."""

    @property
    def node_group_name(self) -> str:
        """The name of the auto scaling group / managed instance group."""
        ...

    @property
    def model(self) -> IModelArtifacts:
        """The model the nodes fetch at boot."""
        ...


@runtime_checkable
class IDataTransferJob(Protocol):
    """A cloud-native bulk copy from the other cloud's bucket into this cloud's (DataSync / Storage Transfer Service)."""

    @property
    def mode(self) -> str:
        """``"full"``, ``"incremental"`` or ``"partial"`` (see :mod:`lepton_cdk.core.transfer`)."""
        ...

    @property
    def transfer_id(self) -> str:
        """What monitoring watches: the DataSync task ARN on AWS, the transfer job name on GCP."""
        ...


@runtime_checkable
class IModelServing(Protocol):
    """A model served over the Open Inference Protocol v2 at one URL.

    On the node group the URL is a private load balancer's; on a managed
    service (SageMaker) it is the service's invocation URL.
    """

    @property
    def endpoint_url(self) -> str:
        """Where clients send requests (a token until apply)."""
        ...
