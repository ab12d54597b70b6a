"""Serving a model: on the GPU node group behind a private load balancer, or on a SageMaker endpoint.

Default settings (``ModelServing``, on a :class:`~lepton_cdk.aws.GpuNodeGroup`):
- An internal Application Load Balancer (child ``"Resource"``) in the node
  group's subnets (two zones with the default private network): no public
  address, invalid HTTP headers dropped, idle timeout 60 s.
- A target group (``"TargetGroup"``) on the nodes' Open Inference Protocol
  v2 HTTP port 8000, health check ``GET /v2/health/ready`` (200) every 15 s,
  2 successes to become healthy, 3 failures to become unhealthy; 30 s
  deregistration delay. The node group is registered with it and switches
  to ELB health checks, so a node that stops answering is replaced.
- A listener (``"Listener"``) forwarding everything to the target group:
  HTTPS on 443 with the TLS 1.3 policy ``ELBSecurityPolicy-TLS13-1-2-2021-06``
  when you pass ``certificate``; otherwise plain HTTP on port 80, which never
  leaves the VPC (the load balancer is internal and only ``allowed_cidrs``
  may reach it).
- Security groups: the load balancer's (``"SecurityGroup"``) admits the
  listener port from the VPC's own range only (``allowed_cidrs`` to
  change it; ``0.0.0.0/0`` fails the LEP-NET-1 policy check) and may only
  reach the nodes on port 8000; the nodes' groups admit port 8000 from the
  load balancer's group only.
- Deletion protection off, so ``terraform destroy`` works; turn it on with
  ``deletion_protection=True`` for production.

Default settings (``ManagedModelServing``, SageMaker real-time inference):
- A SageMaker model (``"Model"``) reading the model version's prefix
  uncompressed (``S3Prefix``, no ``model.tar.gz``) into NVIDIA Triton
  Inference Server (the prebuilt ``sagemaker-tritonserver`` image, tag
  ``24.09-py3``, looked up for the provider's region), network isolation
  on: the container has no network access at all.
- An execution role (``"Role"``) that trusts ``sagemaker.amazonaws.com``
  only and may: read the model version's objects (``s3:GetObject`` on the
  prefix, ``kms:Decrypt`` via S3 on the bucket key), list that prefix only
  (``s3:ListBucket`` with an ``s3:prefix`` condition), and write logs to
  ``/aws/sagemaker/Endpoints/*`` in this account and region.
- An endpoint configuration (``"EndpointConfig"``) named from the prefix
  ``lepton-`` (Terraform appends a unique suffix) with
  ``create_before_destroy``, as is the model: a new model version creates a
  new model and configuration, the endpoint switches to them, and only then
  are the old ones deleted (no downtime, no name clash). One variant
  ``primary`` on one ``ml.g5.xlarge``.
- Storage volumes encrypted with the model bucket's KMS key (or
  ``volume_key``) on instance types with EBS volumes. Types with local NVMe
  storage (``ml.g5``, ``ml.g4dn``, ``ml.p4d`` ...) are hardware-encrypted and
  SageMaker refuses a key for them, so none is set (the LEP-SM-1 check
  treats them as not applicable).
- The endpoint (``"Resource"``); its URL is the SageMaker runtime's
  ``/endpoints/<name>/invocations``, reached with SigV4-signed requests only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from lepton_cdk.contract.serving import TRITON_HTTP_PORT, TRITON_READY_PATH
from lepton_cdk.core.framework import Construct, TerraformResourceLifecycle, aws
from lepton_cdk.core.interfaces import Grant, IGrantable, IHasArn, IHasId
from lepton_cdk.core.validation import PropChecks

from .bucket import ModelArtifacts
from .gpu_nodes import GpuNodeGroup
from .iam import PolicyStatement, ServiceRole, iam_principal

SERVING_PORT = TRITON_HTTP_PORT  # where the nodes' Triton answers
HEALTH_CHECK_PATH = TRITON_READY_PATH
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
DEFAULT_SAGEMAKER_INSTANCE_TYPE = "ml.g5.xlarge"
TRITON_REPOSITORY = "sagemaker-tritonserver"
DEFAULT_TRITON_IMAGE_TAG = "24.09-py3"
# Instance families with local NVMe storage: SageMaker rejects a KMS key for their volumes.
NVME_INSTANCE_FAMILIES = frozenset({
    "c5d", "c6gd", "c6id", "g4dn", "g5", "g6", "g6e", "gr6", "inf2", "m5d", "m6gd", "m6id", "p3dn", "p4d", "p4de", "p5", "p5e",
    "r5d", "r6gd", "r6id", "trn1", "trn1n",
})

_ML_INSTANCE = re.compile(r"^ml\.([a-z0-9-]+)\.([a-z0-9]+)$")
_ECR_IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([a-z0-9._/-]+)(?::[\w.-]+|@sha256:[0-9a-f]{64})$")


class IHasKmsKey(Protocol):
    """A KMS key holder: a :class:`~lepton_cdk.aws.ModelBucket` (its ``kms_key_id``, a key ARN) or anything with ``kms_key_id``."""

    @property
    def kms_key_id(self) -> str | None: ...


def _cidr_problems(prop: str, cidrs: Sequence[str]) -> list[str]:
    problems = []
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            problems.append(f"{prop} contains {cidr!r}, which is not a network in CIDR form; use e.g. '10.0.0.0/8'")
    if not cidrs:
        problems.append(f"{prop}=[] admits nobody; pass at least one CIDR range, or leave it unset for the VPC's own range")
    return problems


class ModelServing(Construct):
    """The node group's model behind a private Application Load Balancer. Implements :class:`lepton_cdk.core.IModelServing`."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        node_group: GpuNodeGroup,
        allowed_cidrs: Sequence[str] | None = None,
        certificate: IHasArn | None = None,
        internet_facing: bool = False,
        subnets: Sequence[IHasId] | None = None,
        serving_port: int = SERVING_PORT,
        health_check_path: str = HEALTH_CHECK_PATH,
        health_check_interval_sec: int = 15,
        healthy_threshold_count: int = 2,
        unhealthy_threshold_count: int = 3,
        deregistration_delay_sec: int = 30,
        idle_timeout_sec: int = 60,
        deletion_protection: bool = False,
    ) -> None:
        """Create the load balancer, target group, listener and security group rules, and register the nodes.

        :param node_group: the nodes serving the model on ``serving_port``.
        :param allowed_cidrs: who may call the endpoint. Default: the nodes' VPC range only.
        :param certificate: an ACM certificate (anything with ``.arn``) for an
            HTTPS listener on 443. Default: none; plain HTTP on port 80 inside the VPC.
        :param internet_facing: put the load balancer on the internet. Default:
            internal. Needs ``subnets`` (public ones) and ``certificate``.
        :param subnets: where the load balancer lives. Default: the node group's subnets.
        :param serving_port: the port the nodes' server listens on. Default: 8000 (OIP v2 HTTP).
        :param health_check_path: the readiness path. Default: ``/v2/health/ready``.
        :param health_check_interval_sec: seconds between checks (5-300). Default: 15.
        :param healthy_threshold_count: successes before a node takes traffic (2-10). Default: 2.
        :param unhealthy_threshold_count: failures before a node is taken out and replaced (2-10). Default: 3.
        :param deregistration_delay_sec: seconds in-flight requests get when a node leaves (0-3600). Default: 30.
        :param idle_timeout_sec: seconds an idle connection stays open (1-4000). Default: 60.
        :param deletion_protection: refuse to delete the load balancer. Default: off.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        if allowed_cidrs is not None and checks.known(*allowed_cidrs):
            checks.add(*_cidr_problems("allowed_cidrs", list(allowed_cidrs)))
        checks.int_range("serving_port", serving_port, minimum=1, maximum=65535)
        if checks.known(health_check_path):
            checks.require(health_check_path.startswith("/"), f"health_check_path={health_check_path!r} must start with '/'; use e.g. {HEALTH_CHECK_PATH!r}")
        checks.int_range("health_check_interval_sec", health_check_interval_sec, minimum=5, maximum=300)
        checks.int_range("healthy_threshold_count", healthy_threshold_count, minimum=2, maximum=10)
        checks.int_range("unhealthy_threshold_count", unhealthy_threshold_count, minimum=2, maximum=10)
        checks.int_range("deregistration_delay_sec", deregistration_delay_sec, minimum=0, maximum=3600)
        checks.int_range("idle_timeout_sec", idle_timeout_sec, minimum=1, maximum=4000)
        if internet_facing:
            checks.require(subnets is not None, "internet_facing=True needs subnets: pass public subnets (the nodes' subnets have no internet route)")
            checks.require(certificate is not None, "internet_facing=True needs certificate: an endpoint on the internet must use HTTPS")
        lb_subnet_ids = [s.id for s in subnets] if subnets is not None else list(node_group.subnet_ids)
        checks.require(len(lb_subnet_ids) >= 2,
                       f"an Application Load Balancer needs subnets in at least two availability zones, got {len(lb_subnet_ids)}; "
                       "pass subnets= or give the node group two subnets")
        checks.raise_if_any()

        self.node_group = node_group
        https = certificate is not None
        self.listener_port = 443 if https else 80
        self.scheme = "https" if https else "http"
        cidrs = list(allowed_cidrs) if allowed_cidrs is not None else [node_group.vpc_cidr_block]

        self.security_group = aws.security_group.SecurityGroup(
            self, "SecurityGroup",
            name_prefix="lepton-serving-",
            description="lepton-cdk model serving load balancer",
            vpc_id=node_group.vpc_id,
            tags={"Name": "lepton-serving"},
        )
        for index, cidr in enumerate(cidrs):
            aws.vpc_security_group_ingress_rule.VpcSecurityGroupIngressRule(
                self, f"SecurityGroupIngress-{index}",
                security_group_id=self.security_group.id, ip_protocol="tcp", from_port=self.listener_port, to_port=self.listener_port,
                cidr_ipv4=cidr, description="callers of the model endpoint",
            )
        for index, group_id in enumerate(node_group.security_group_ids):
            aws.vpc_security_group_egress_rule.VpcSecurityGroupEgressRule(
                self, f"SecurityGroupEgress-{index}",
                security_group_id=self.security_group.id, ip_protocol="tcp", from_port=serving_port, to_port=serving_port,
                referenced_security_group_id=group_id, description="requests and health checks to the GPU nodes",
            )
            aws.vpc_security_group_ingress_rule.VpcSecurityGroupIngressRule(
                self, f"NodeIngress-{index}",
                security_group_id=group_id, ip_protocol="tcp", from_port=serving_port, to_port=serving_port,
                referenced_security_group_id=self.security_group.id, description="model serving load balancer",
            )

        self.resource = aws.lb.Lb(
            self, "Resource",
            name_prefix="lepton",
            internal=not internet_facing,
            load_balancer_type="application",
            subnets=lb_subnet_ids,
            security_groups=[self.security_group.id],
            drop_invalid_header_fields=True,
            enable_deletion_protection=deletion_protection,
            idle_timeout=idle_timeout_sec,
            tags={"Name": "lepton-serving"},
        )
        tg = aws.lb_target_group
        self.target_group = tg.LbTargetGroup(
            self, "TargetGroup",
            name_prefix="lepton",
            port=serving_port,
            protocol="HTTP",
            target_type="instance",
            vpc_id=node_group.vpc_id,
            deregistration_delay=str(deregistration_delay_sec),
            health_check=tg.LbTargetGroupHealthCheck(
                enabled=True, protocol="HTTP", port="traffic-port", path=health_check_path, matcher="200",
                interval=health_check_interval_sec, timeout=5,
                healthy_threshold=healthy_threshold_count, unhealthy_threshold=unhealthy_threshold_count,
            ),
            # A changed port or protocol replaces the group; the listener must move to the new one first.
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        listener = aws.lb_listener
        self.listener = listener.LbListener(
            self, "Listener",
            load_balancer_arn=self.resource.arn,
            port=self.listener_port,
            protocol="HTTPS" if https else "HTTP",
            ssl_policy=TLS_POLICY if https else None,
            certificate_arn=certificate.arn if https else None,
            default_action=[listener.LbListenerDefaultAction(type="forward", target_group_arn=self.target_group.arn)],
        )
        node_group.attach_to_target_group(self.target_group)

    @property
    def endpoint_url(self) -> str:
        """``http://<load balancer DNS name>`` (``https://`` with a certificate)."""
        return f"{self.scheme}://{self.resource.dns_name}"

    @property
    def load_balancer_dns_name(self) -> str:
        """The load balancer's DNS name."""
        return self.resource.dns_name

    @property
    def load_balancer_arn(self) -> str:
        """The load balancer's ARN."""
        return self.resource.arn

    @property
    def load_balancer_arn_suffix(self) -> str:
        """``app/<name>/<id>``, the ``LoadBalancer`` dimension of its CloudWatch metrics."""
        return self.resource.arn_suffix

    @property
    def target_group_arn_suffix(self) -> str:
        """``targetgroup/<name>/<id>``, the ``TargetGroup`` dimension of its CloudWatch metrics."""
        return self.target_group.arn_suffix


class ManagedModelServing(Construct):
    """The model on a SageMaker real-time endpoint. Implements :class:`lepton_cdk.core.IModelServing`."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        model: ModelArtifacts,
        instance_type: str = DEFAULT_SAGEMAKER_INSTANCE_TYPE,
        instance_count: int = 1,
        image_uri: str | None = None,
        triton_image_tag: str = DEFAULT_TRITON_IMAGE_TAG,
        environment: Mapping[str, str] | None = None,
        volume_key: IHasKmsKey | None = None,
        network_isolation: bool = True,
        variant_name: str = "primary",
        subnets: Sequence[IHasId] | None = None,
        security_groups: Sequence[IHasId] | None = None,
    ) -> None:
        """Create the execution role, model, endpoint configuration and endpoint.

        :param model: the model version to serve; the role may read its prefix only.
        :param instance_type: a SageMaker hosting instance type. Default: ``ml.g5.xlarge`` (1 A10G).
        :param instance_count: instances behind the endpoint (1-100). Default: 1.
        :param image_uri: the serving container image. Default: SageMaker's
            prebuilt Triton Inference Server image for the provider's region.
        :param triton_image_tag: the Triton image tag (ignored with ``image_uri``). Default: ``24.09-py3``.
        :param environment: environment variables for the container. Default:
            with the Triton image, ``SAGEMAKER_TRITON_DEFAULT_MODEL_NAME`` set to
            the manifest's model name (Triton serves that model); none otherwise.
        :param volume_key: the KMS key for the instances' storage volumes
            (anything with ``kms_key_id``). Default: the model bucket's key; unused
            on instance types with local NVMe storage.
        :param network_isolation: cut the container off from the network.
            Default: on (Triton needs no network; SageMaker still downloads the model).
        :param variant_name: the production variant's name. Default: ``primary``.
        :param subnets: attach the model's containers to these VPC subnets
            (with ``security_groups``). Default: no VPC attachment.
        :param security_groups: security groups for those attachments (needs ``subnets``).
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        family = None
        if checks.known(instance_type):
            match = _ML_INSTANCE.match(instance_type)
            checks.require(match is not None,
                           f"instance_type={instance_type!r} is not a SageMaker instance type; use one like {DEFAULT_SAGEMAKER_INSTANCE_TYPE!r}")
            family = match.group(1) if match else None
        checks.int_range("instance_count", instance_count, minimum=1, maximum=100)
        if image_uri is not None and checks.known(image_uri):
            checks.require(bool(re.match(r"^[a-z0-9.-]+(:\d+)?/[a-z0-9._/-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$", image_uri)),
                           f"image_uri={image_uri!r} is not a container image reference; use '<registry>/<repository>:<tag>'")
        if checks.known(variant_name):
            checks.require(bool(re.match(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", variant_name)),
                           f"variant_name={variant_name!r} must be 1-63 letters, digits or '-'")
        if (subnets is None) != (security_groups is None):
            checks.add("subnets and security_groups go together; pass both to attach the model to a VPC, or neither")
        elif subnets is not None and security_groups is not None:
            checks.require(len(subnets) > 0 and len(security_groups) > 0, "subnets and security_groups must each hold at least one entry")
        needs_key = family is not None and family not in NVME_INSTANCE_FAMILIES
        key_arn = (volume_key or model.bucket).kms_key_id if needs_key else None
        if needs_key and key_arn is None:
            checks.add(f"instance_type={instance_type!r} has EBS volumes and the model bucket has no known KMS key; pass volume_key= "
                       "(a ModelBucket or anything with kms_key_id)")
        checks.raise_if_any()

        self._model = model
        self.region = aws.data_aws_region.DataAwsRegion(self, "Region")
        self.account = aws.data_aws_caller_identity.DataAwsCallerIdentity(self, "Account")
        self.partition = aws.data_aws_partition.DataAwsPartition(self, "Partition")

        self.role = ServiceRole(self, "Role", service="sagemaker.amazonaws.com", description="lepton-cdk SageMaker endpoint: read one model version")
        self.grant = model.grant_read(self)
        self.role.add_to_principal_policy(PolicyStatement(
            actions=["s3:ListBucket"], resources=[model.bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{model.key_prefix}*"]}},
        ))
        self.role.add_to_principal_policy(PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[f"arn:{self.partition.partition}:logs:{self.region.name}:{self.account.account_id}:log-group:/aws/sagemaker/Endpoints/*"],
        ))
        if image_uri is None:
            self.image = aws.data_aws_sagemaker_prebuilt_ecr_image.DataAwsSagemakerPrebuiltEcrImage(
                self, "Image", repository_name=TRITON_REPOSITORY, image_tag=triton_image_tag,
            )
            image_uri = self.image.registry_path
            environment = {"SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": model.manifest.model_name, **(environment or {})}
        else:
            self.image = None
            ecr = _ECR_IMAGE.match(image_uri) if checks.known(image_uri) else None
            if ecr:  # a private ECR image: the role must be able to pull it
                account, region, repository = ecr.groups()
                self.role.add_to_principal_policy(PolicyStatement(
                    actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                    resources=[f"arn:{self.partition.partition}:ecr:{region}:{account}:repository/{repository}"],
                ))
                self.role.add_to_principal_policy(PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        self.image_uri = image_uri

        sm = aws.sagemaker_model
        replace_first = TerraformResourceLifecycle(create_before_destroy=True)
        self.model_resource = sm.SagemakerModel(
            self, "Model",
            execution_role_arn=self.role.role_arn,
            enable_network_isolation=network_isolation,
            primary_container=sm.SagemakerModelPrimaryContainer(
                image=image_uri,
                mode="SingleModel",
                model_data_source=sm.SagemakerModelPrimaryContainerModelDataSource(
                    s3_data_source=[sm.SagemakerModelPrimaryContainerModelDataSourceS3DataSource(
                        s3_uri=model.prefix_uri, s3_data_type="S3Prefix", compression_type="None",
                    )],
                ),
                environment=dict(environment) if environment else None,
            ),
            vpc_config=sm.SagemakerModelVpcConfig(
                subnets=[s.id for s in subnets], security_group_ids=[g.id for g in security_groups],
            ) if subnets is not None and security_groups is not None else None,
            tags={"lepton:model": f"{model.manifest.model_name}:{model.manifest.model_version}"},
            # SageMaker checks the role's access when the model is created.
            depends_on=[self.role.policy],
            lifecycle=replace_first,
        )
        ec = aws.sagemaker_endpoint_configuration
        self.endpoint_config = ec.SagemakerEndpointConfiguration(
            self, "EndpointConfig",
            name_prefix="lepton-",
            kms_key_arn=key_arn,
            production_variants=[ec.SagemakerEndpointConfigurationProductionVariants(
                variant_name=variant_name, model_name=self.model_resource.name,
                initial_instance_count=instance_count, instance_type=instance_type,
            )],
            lifecycle=replace_first,
        )
        self.variant_name = variant_name
        self.resource = aws.sagemaker_endpoint.SagemakerEndpoint(
            self, "Resource", endpoint_config_name=self.endpoint_config.name,
        )

    @property
    def grant_principal(self) -> ServiceRole:
        """The SageMaker execution role."""
        return self.role

    @property
    def model(self) -> ModelArtifacts:
        """The model version served."""
        return self._model

    @property
    def endpoint_name(self) -> str:
        """The SageMaker endpoint's name."""
        return self.resource.name

    @property
    def endpoint_arn(self) -> str:
        """The SageMaker endpoint's ARN."""
        return self.resource.arn

    @property
    def endpoint_url(self) -> str:
        """``https://runtime.sagemaker.<region>.amazonaws.com/endpoints/<name>/invocations`` (SigV4-signed requests)."""
        return f"https://runtime.sagemaker.{self.region.name}.amazonaws.com/endpoints/{self.resource.name}/invocations"

    def grant_invoke(self, grantee: IGrantable) -> Grant:
        """Let ``grantee`` (anything with an IAM ``grant_principal``) call ``sagemaker:InvokeEndpoint`` on this endpoint only."""
        principal = iam_principal("grant_invoke", grantee)
        principal.add_to_principal_policy(PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=[self.resource.arn]))
        return Grant(grantee=principal.node.path, actions=("sagemaker:InvokeEndpoint",), resources=(self.resource.arn,))


__all__ = [
    "DEFAULT_SAGEMAKER_INSTANCE_TYPE", "DEFAULT_TRITON_IMAGE_TAG", "HEALTH_CHECK_PATH", "NVME_INSTANCE_FAMILIES", "SERVING_PORT",
    "IHasKmsKey", "ManagedModelServing", "ModelServing",
]
