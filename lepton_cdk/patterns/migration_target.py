"""``MigrationTarget``: a whole migration target on AWS or GCP in one construct.

Why one class with ``cloud=`` rather than ``patterns.aws.MigrationTarget``
and ``patterns.gcp.MigrationTarget``: a target is described by the same
handful of decisions on either cloud (which model, how many GPU nodes, spot
or not, where the data comes from, who gets the alerts, whether data
survives ``destroy``), so one prop list, one set of attribute and output
names, and one place to read the defaults serve both; moving a target from
one cloud to the other is a change of ``cloud=`` and of the source
descriptor, which is what lepton-cdk is for. The few props that exist on
one cloud only (``managed_endpoint``, ``enforce_tls`` on AWS) are refused
on the other with the fix, together with every other problem. The cloud's
constructs are imported only for the cloud asked for, so ``lepton_cdk.aws``
and ``lepton_cdk.gcp`` still never import each other.

Default settings (children in brackets are the construct ids, pinned: they
decide the Terraform logical ids):
- A new secure model bucket [``ModelBucket``] (``lepton_cdk.aws.ModelBucket``
  / ``lepton_cdk.gcp.ModelBucket``: customer-managed key, versioning, no
  public access, access logs, ``prevent_destroy``); ``bucket=`` uses one you
  already have (``ModelBucket.from_bucket_name(...)``) instead. The
  manifest's artifacts are re-hashed and uploaded into it under
  ``models/<name>/<version>/``.
- One on-demand GPU node [``GpuNodes``] (``g5.xlarge`` on AWS,
  ``g2-standard-4`` with one L4 on GCP) in a new private network, fetching
  the model, checking its sha256 and serving it with Triton on port 8000.
  On both clouds a node gets 900 s after launch before failing health checks
  replace it (``health_check_grace_period_sec``, the node groups' own
  default: model download plus the Triton image pull).
- Serving [``Serving``] behind a private load balancer: an internal
  Application Load Balancer on AWS, a regional internal Application Load
  Balancer on GCP, both plain HTTP inside the network unless you pass
  ``certificate`` (then HTTPS on 443; see
  ``lepton_cdk.aws.ModelServing`` / ``lepton_cdk.gcp.ModelServing``).
- No SageMaker endpoint; ``managed_endpoint=True`` adds one [``SageMaker``]
  serving the same artifacts (AWS only: Terraform cannot deploy a model to
  a Vertex AI endpoint).
- No data transfer; ``source=`` (``GcsSource`` for an AWS target,
  ``S3Source`` for a GCP target) adds a second secure bucket for the data
  [``DataBucket``] and the cloud's bulk mover [``Transfer``] (DataSync /
  Storage Transfer Service) copying into it, in ``transfer_mode``
  (``"incremental"``: new and changed objects only) with checksum
  verification, started by hand unless ``transfer_schedule`` is given.
- Monitoring [``Monitoring``] of the nodes, the serving and the transfer.
  AWS: a new KMS-encrypted SNS topic that every alarm notifies, with each
  ``alert_emails`` address subscribed; the SageMaker endpoint's alarms
  [``SageMakerMonitoring``] go to the same topic. GCP: alert policies need
  a recipient (GCP has no default one), so without ``alert_emails`` none
  are created and :attr:`monitoring` is ``None``.
- Data is retained: buckets and keys carry ``prevent_destroy``.
  ``retain_data=False`` lets ``terraform destroy`` delete them; the
  LEP-RETAIN-1 policy check then fails until you suppress it on the target
  with a reason (``PolicyChecks.suppress(target, "LEP-RETAIN-1", reason=...)``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from lepton_cdk.contract import Manifest, read_manifest
from lepton_cdk.core.framework import Construct
from lepton_cdk.core.gpu_nodes import DEFAULT_HEALTH_CHECK_GRACE_PERIOD_SEC
from lepton_cdk.core.interfaces import BUCKET_KINDS, CLOUDS, IBucket, IHasArn, IHasId, is_bucket_of
from lepton_cdk.core.monitoring import email_problems
from lepton_cdk.core.renames import renamed_props
from lepton_cdk.core.transfer import MODES as TRANSFER_MODES
from lepton_cdk.core.transfer import TransferSchedule
from lepton_cdk.core.validation import PropChecks

from .sources import GcsSource, S3Source

# The same values as lepton_cdk.aws.DEFAULT_INSTANCE_TYPE / lepton_cdk.gcp.DEFAULT_INSTANCE_TYPE, without importing either cloud.
DEFAULT_INSTANCE_TYPE = {"aws": "g5.xlarge", "gcp": "g2-standard-4"}


class MigrationTarget(Construct):
    """Bucket, model artifacts, GPU nodes, private serving, optional SageMaker, optional transfer, monitoring.

    See the module docstring for the default settings. Attributes expose the
    children (``bucket``, ``artifacts``, ``nodes``, ``serving``,
    ``managed_serving``, ``data_bucket``, ``transfer``, ``monitoring``,
    ``managed_monitoring``; ``None`` where not built) and :attr:`outputs`
    names the values worth a stack output.

    Props are checked before any child is built, and every problem
    (cloud-mismatched props included) is raised in one
    :class:`~lepton_cdk.core.ConstructValidationError`; values handed
    through to one child (a source's bucket name or agent ARNs, an instance
    type's family) are then checked by that child, which reports all of its
    own problems at once under its path.
    """

    @renamed_props(node_type="instance_type")
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cloud: str,
        manifest: Manifest | str | os.PathLike[str],
        bucket: IBucket | None = None,
        instance_type: str | None = None,
        node_count: int = 1,
        spot: bool = False,
        image: str | None = None,
        managed_endpoint: bool = False,
        managed_instance_type: str | None = None,
        source: GcsSource | S3Source | None = None,
        transfer_mode: str = "incremental",
        transfer_schedule: TransferSchedule | None = None,
        alert_emails: Sequence[str] = (),
        certificate: Any = None,
        retain_data: bool = True,
        enforce_tls: bool = True,
        capacity_timeout_min: int = 10,
        health_check_grace_period_sec: int = DEFAULT_HEALTH_CHECK_GRACE_PERIOD_SEC,
    ) -> None:
        """Build the target.

        :param cloud: ``"aws"`` or ``"gcp"``: where the target lives.
        :param manifest: the model's ``manifest.json`` (a :class:`~lepton_cdk.contract.Manifest`,
            the file or its folder); every artifact is re-hashed before anything is declared.
        :param bucket: an existing bucket of ``cloud`` to upload the artifacts into
            (``ModelBucket.from_bucket_name(...)`` or a ``ModelBucket`` you built).
            Default: a new ``ModelBucket`` (child ``"ModelBucket"``).
        :param instance_type: the GPU instance type (AWS) or machine type (GCP).
            Default: ``g5.xlarge`` (1 A10G) / ``g2-standard-4`` (1 L4).
        :param node_count: GPU nodes to run (0-100). Default: 1.
        :param spot: run the nodes on Spot capacity. Default: on-demand.
        :param image: the nodes' AMI id (AWS) or boot image (GCP). Default: the
            AWS Deep Learning Base GPU AMI / Ubuntu 22.04 accelerator image with NVIDIA 550.
        :param managed_endpoint: also serve the model from a SageMaker endpoint (AWS only). Default: off.
        :param managed_instance_type: the SageMaker instance type (with
            ``managed_endpoint``). Default: ``ml.g5.xlarge``.
        :param source: the other cloud's bucket to copy data from:
            :class:`GcsSource` (AWS target) or :class:`S3Source` (GCP target).
            Default: no transfer and no data bucket.
        :param transfer_mode: ``"full"``, ``"incremental"`` or ``"partial"`` (with ``source``). Default: ``"incremental"``.
        :param transfer_schedule: when the transfer runs (with ``source``). Default: only when started by hand.
        :param alert_emails: addresses notified by monitoring. Default: none
            (AWS: the topic exists and you subscribe later; GCP: no alert policies).
        :param certificate: serve HTTPS on 443 with this certificate: an ACM certificate (AWS, anything
            with ``.arn``) or a regional SSL certificate (GCP, anything with ``.id``). Default: none; plain
            HTTP on port 80, reachable from inside the network only.
        :param retain_data: ``prevent_destroy`` on buckets and keys. Default: retained.
        :param enforce_tls: the TLS-only bucket policy on the buckets created here (AWS only;
            turn it off only for an S3 emulator served over plain HTTP). Default: on.
        :param capacity_timeout_min: minutes ``terraform apply`` waits for the AWS nodes to be in service
            (0: do not wait; AWS only, GCP does not wait). Default: 10.
        :param health_check_grace_period_sec: seconds after a node boots before failing health checks
            replace it, handed to the node group. Default: 900, the node groups' own default on both clouds.
        """
        super().__init__(scope, id)
        loaded = manifest if isinstance(manifest, Manifest) else read_manifest(manifest, verify=False)
        self._check(cloud=cloud, bucket=bucket, instance_type=instance_type, node_count=node_count, spot=spot, image=image,
                    managed_endpoint=managed_endpoint, managed_instance_type=managed_instance_type, source=source,
                    transfer_mode=transfer_mode, transfer_schedule=transfer_schedule, alert_emails=alert_emails,
                    certificate=certificate, retain_data=retain_data, enforce_tls=enforce_tls, capacity_timeout_min=capacity_timeout_min)
        self.cloud = cloud
        self.manifest = loaded
        self.certificate = certificate
        self.retain_data = retain_data
        self.managed_serving: Any = None
        self.managed_monitoring: Any = None
        self.data_bucket: Any = None
        self.transfer: Any = None
        self.monitoring: Any = None
        emails = tuple(alert_emails)
        # Handed through unchanged: each node group checks the value against its own cloud's range.
        self.health_check_grace_period_sec = health_check_grace_period_sec
        if cloud == "aws":
            self._build_aws(bucket, loaded, instance_type, node_count, spot, image, managed_endpoint, managed_instance_type, source,
                            transfer_mode, transfer_schedule, emails, retain_data, enforce_tls, capacity_timeout_min)
        else:
            self._build_gcp(bucket, loaded, instance_type, node_count, spot, image, source, transfer_mode, transfer_schedule, emails,
                            retain_data)

    # -- validation ------------------------------------------------------------------------------------------------

    def _check(self, *, cloud: str, bucket: Any, instance_type: str | None, node_count: int, spot: bool, image: str | None,
               managed_endpoint: bool, managed_instance_type: str | None, source: Any, transfer_mode: str,
               transfer_schedule: Any, alert_emails: Sequence[str], certificate: Any, retain_data: bool, enforce_tls: bool,
               capacity_timeout_min: int) -> None:
        checks = PropChecks(self.node.path)
        known_cloud = cloud in CLOUDS
        checks.require(known_cloud, f"cloud={cloud!r} is not a target cloud; use 'aws' or 'gcp'")
        for name, value in (("spot", spot), ("managed_endpoint", managed_endpoint), ("retain_data", retain_data),
                            ("enforce_tls", enforce_tls)):
            checks.require(isinstance(value, bool), f"{name}={value!r} is not a bool; pass True or False")
        checks.int_range("node_count", node_count, minimum=0, maximum=100)
        checks.int_range("capacity_timeout_min", capacity_timeout_min, minimum=0, maximum=60)
        checks.add(*email_problems("alert_emails", alert_emails, checks))
        if source is None:
            checks.require(transfer_mode == "incremental",
                           f"transfer_mode={transfer_mode!r} was given without source; pass source= or drop transfer_mode")
            checks.require(transfer_schedule is None, "transfer_schedule was given without source; pass source= or drop transfer_schedule")
        else:
            checks.require(transfer_mode in TRANSFER_MODES,
                           f"transfer_mode={transfer_mode!r} is not a transfer mode; use one of {', '.join(TRANSFER_MODES)}")
            checks.require(transfer_schedule is None or isinstance(transfer_schedule, TransferSchedule),
                           f"transfer_schedule={transfer_schedule!r} is not a TransferSchedule; use TransferSchedule.once(...), .daily(...) or .every(...)")
        if certificate is not None and known_cloud:
            attribute, protocol = ("arn", IHasArn) if cloud == "aws" else ("id", IHasId)
            checks.require(isinstance(certificate, protocol),
                           f"certificate={type(certificate).__name__} has no .{attribute}; on {cloud} pass "
                           f"{'an ACM certificate (acm_certificate.AcmCertificate or its data source)' if cloud == 'aws' else 'a regional SSL certificate (compute_region_ssl_certificate)'}")
        if managed_instance_type is not None and not managed_endpoint:
            checks.add("managed_instance_type was given without managed_endpoint=True; turn the SageMaker endpoint on or drop it")
        if known_cloud:
            self._check_cloud_match(checks, cloud=cloud, bucket=bucket, instance_type=instance_type, image=image,
                                    managed_endpoint=managed_endpoint, source=source, enforce_tls=enforce_tls,
                                    capacity_timeout_min=capacity_timeout_min)
        checks.raise_if_any()

    @staticmethod
    def _check_cloud_match(checks: PropChecks, *, cloud: str, bucket: Any, instance_type: str | None, image: str | None,
                           managed_endpoint: bool, source: Any, enforce_tls: bool, capacity_timeout_min: int) -> None:
        other = "gcp" if cloud == "aws" else "aws"
        want_source, bulk_mover = (GcsSource, "DataSync") if cloud == "aws" else (S3Source, "Storage Transfer Service")
        if source is not None and not isinstance(source, want_source):
            checks.add(f"source={type(source).__name__} cannot feed a {cloud} target; a {cloud} target copies from "
                       f"{'Cloud Storage' if cloud == 'aws' else 'S3'} with {bulk_mover}: pass {want_source.__name__}(...)")
        if bucket is not None:
            if is_bucket_of(bucket, other):
                checks.add(f"bucket is {BUCKET_KINDS[other]} but cloud={cloud!r}; pass a "
                           f"lepton_cdk.{cloud}.ModelBucket (or its from_bucket_name(...)), or set cloud={other!r}")
            elif not is_bucket_of(bucket, cloud):
                checks.add(f"bucket={type(bucket).__name__} is not a model bucket; pass lepton_cdk.{cloud}.ModelBucket.from_bucket_name(...)")
        if instance_type is not None and checks.known(instance_type):
            looks_aws = bool(re.match(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$", instance_type))
            if looks_aws != (cloud == "aws"):
                example = DEFAULT_INSTANCE_TYPE[cloud]
                checks.add(f"instance_type={instance_type!r} is an {other.upper()} type but cloud={cloud!r}; use a {cloud.upper()} type such as {example!r}")
        if cloud == "gcp":
            if managed_endpoint:
                checks.add("managed_endpoint=True is AWS only: Terraform cannot deploy a model to a Vertex AI endpoint; "
                           "on GCP the node group serves it (drop managed_endpoint)")
            if enforce_tls is False:
                checks.add("enforce_tls=False is AWS only (Cloud Storage is always TLS); drop it")
            if image is not None and checks.known(image) and image.startswith("ami-"):
                checks.add(f"image={image!r} is an AMI id but cloud='gcp'; pass a GCP image or image family, or leave it unset")
            if capacity_timeout_min != 10:
                checks.add("capacity_timeout_min is AWS only (a GCP managed instance group is not waited for); drop it")
        elif image is not None and checks.known(image) and not image.startswith("ami-"):
            checks.add(f"image={image!r} is not an AMI id; on AWS pass one like 'ami-0123456789abcdef0' or leave it unset")

    # -- AWS -------------------------------------------------------------------------------------------------------

    def _build_aws(self, bucket: Any, manifest: Manifest, instance_type: str | None, node_count: int, spot: bool, image: str | None,
                   managed_endpoint: bool, managed_instance_type: str | None, source: GcsSource | None, transfer_mode: str,
                   transfer_schedule: TransferSchedule | None, emails: tuple[str, ...], retain_data: bool, enforce_tls: bool,
                   capacity_timeout_min: int) -> None:
        from lepton_cdk import aws

        self.bucket = bucket if bucket is not None else aws.ModelBucket(
            self, "ModelBucket", retain_on_destroy=retain_data, enforce_tls=enforce_tls)
        self.artifacts = self.bucket.upload_artifacts(manifest)
        self.nodes = aws.GpuNodeGroup(
            self, "GpuNodes",
            model=self.artifacts,
            instance_type=instance_type or DEFAULT_INSTANCE_TYPE["aws"],
            image=image,
            min_size=node_count, node_count=node_count, max_size=max(1, node_count),
            spot=spot,
            health_check_grace_period_sec=self.health_check_grace_period_sec,
            capacity_timeout_min=capacity_timeout_min,
        )
        self.serving = aws.ModelServing(self, "Serving", node_group=self.nodes, certificate=self.certificate)
        if managed_endpoint:
            extra = {"instance_type": managed_instance_type} if managed_instance_type else {}
            self.managed_serving = aws.ManagedModelServing(self, "SageMaker", model=self.artifacts, **extra)
        if source is not None:
            self.data_bucket = aws.ModelBucket(self, "DataBucket", retain_on_destroy=retain_data, enforce_tls=enforce_tls)
            self.transfer = aws.DataTransferJob(
                self, "Transfer",
                source_bucket_name=source.bucket, hmac_secret_id=source.hmac_secret_id, agent_arns=list(source.agent_arns),
                source_prefix=source.prefix, destination=self.data_bucket, mode=transfer_mode, schedule=transfer_schedule,
                retain_on_destroy=retain_data,
            )
        self.monitoring = aws.Monitoring(self, "Monitoring", serving=self.serving, transfer_job=self.transfer,
                                         notification_emails=emails, retain_on_destroy=retain_data)
        if self.managed_serving is not None:
            self.managed_monitoring = aws.Monitoring(self, "SageMakerMonitoring", serving=self.managed_serving,
                                                     topic=self.monitoring.topic)

    # -- GCP -------------------------------------------------------------------------------------------------------

    def _build_gcp(self, bucket: Any, manifest: Manifest, instance_type: str | None, node_count: int, spot: bool, image: str | None,
                   source: S3Source | None, transfer_mode: str, transfer_schedule: TransferSchedule | None,
                   emails: tuple[str, ...], retain_data: bool) -> None:
        from lepton_cdk import gcp

        self.bucket = bucket if bucket is not None else gcp.ModelBucket(self, "ModelBucket", retain_on_destroy=retain_data)
        self.artifacts = self.bucket.upload_artifacts(manifest)
        self.nodes = gcp.GpuNodeGroup(
            self, "GpuNodes",
            model=self.artifacts,
            instance_type=instance_type or DEFAULT_INSTANCE_TYPE["gcp"],
            image=image or gcp.DEFAULT_IMAGE,
            node_count=node_count,
            spot=spot,
            health_check_grace_period_sec=self.health_check_grace_period_sec,
        )
        self.serving = gcp.ModelServing(self, "Serving", node_group=self.nodes, certificate=self.certificate)
        if source is not None:
            self.data_bucket = gcp.ModelBucket(self, "DataBucket", retain_on_destroy=retain_data)
            self.transfer = gcp.DataTransferJob(
                self, "Transfer",
                source_bucket_name=source.bucket, source_role_arn=source.role_arn, source_prefix=source.prefix,
                destination=self.data_bucket, mode=transfer_mode, schedule=transfer_schedule,
            )
        if emails:
            self.monitoring = gcp.Monitoring(self, "Monitoring", serving=self.serving, transfer_job=self.transfer,
                                             notification_emails=emails)

    # -- values for outputs ----------------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """Where clients send Open Inference Protocol requests: the private load balancer's URL (a token until apply)."""
        return self.serving.endpoint_url

    @property
    def node_group_name(self) -> str:
        """The auto scaling group's / managed instance group's name."""
        return self.nodes.node_group_name

    @property
    def model_uri(self) -> str:
        """The ``s3://`` / ``gs://`` URI of the primary model artifact."""
        return self.artifacts.model_uri

    @property
    def alarm_topic_arn(self) -> str | None:
        """The SNS topic every alarm notifies (AWS); ``None`` on GCP."""
        return self.monitoring.topic_arn if self.cloud == "aws" else None

    @property
    def outputs(self) -> Mapping[str, tuple[str, str]]:
        """``{output name: (value, description)}`` for what this target built beyond the bucket and nodes.

        Always ``serving_endpoint_url``; AWS: ``serving_load_balancer_dns_name``
        and ``alarm_topic_arn``, with ``managed_endpoint``
        ``sagemaker_endpoint_name`` and ``sagemaker_endpoint_url``; GCP:
        ``serving_ip_address``; with ``source``: ``data_bucket_name`` and
        ``transfer_id`` (the DataSync task ARN / transfer job name).
        Names follow ``<thing>_<attribute>``, ready for ``TerraformOutput``.
        """
        found: dict[str, tuple[str, str]] = {
            "serving_endpoint_url": (self.serving.endpoint_url, "URL of the private load balancer serving the model (OIP v2)"),
        }
        if self.cloud == "aws":
            found["serving_load_balancer_dns_name"] = (self.serving.load_balancer_dns_name, "DNS name of the internal load balancer")
            found["alarm_topic_arn"] = (self.monitoring.topic_arn, "ARN of the SNS topic the alarms notify")
            if self.managed_serving is not None:
                found["sagemaker_endpoint_name"] = (self.managed_serving.endpoint_name, "Name of the SageMaker endpoint")
                found["sagemaker_endpoint_url"] = (self.managed_serving.endpoint_url, "Invocation URL of the SageMaker endpoint (SigV4)")
        else:
            found["serving_ip_address"] = (self.serving.ip_address, "Private IP address of the internal load balancer")
        if self.transfer is not None:
            found["data_bucket_name"] = (self.data_bucket.bucket_name, "Name of the bucket the source data is copied into")
            found["transfer_id"] = (self.transfer.transfer_id, "DataSync task ARN / Storage Transfer Service job name of the data copy")
        return found


__all__ = ["CLOUDS", "DEFAULT_INSTANCE_TYPE", "MigrationTarget"]
