"""Cloud-neutral contracts the AWS and GCP constructs both satisfy.

They are :class:`typing.Protocol` classes, so a construct conforms by shape,
and code written against them (patterns, the review tool) works on either
cloud. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


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
