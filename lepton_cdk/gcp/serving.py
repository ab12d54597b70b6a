"""Serving a model from the GPU node group behind a private regional load balancer.

Why not Vertex AI: Terraform (the Google provider) can create a Vertex AI
endpoint (``google_vertex_ai_endpoint``) but cannot deploy a model to it;
deploying is an API call (``endpoint.deploy``) outside any plan, so the
model a plan reviewer sees would not be the model served. lepton-cdk
therefore serves from the managed instance group, where the model version
is part of the plan (the boot script names it and its sha256). The AWS side
offers SageMaker as a managed alternative; GCP has none expressible in
Terraform.

Default settings (``ModelServing``):
- A regional internal Application Load Balancer (``INTERNAL_MANAGED``):
  forwarding rule (child ``"Resource"``) with a private address in the
  nodes' subnetwork, reachable only from the same VPC network in the same
  region (global access off); target HTTP proxy (``"Proxy"``), URL map
  (``"UrlMap"``) and backend service (``"BackendService"``, HTTP to the
  group's named port ``http`` = 8000, 60 s timeout, every request logged).
- HTTPS on 443 with ``certificate`` (a regional SSL certificate or
  Certificate Manager certificate with ``.id``); otherwise HTTP on port 80,
  which never leaves the VPC network.
- The node group's auto-healing is turned on
  (:meth:`~lepton_cdk.gcp.GpuNodeGroup.enable_auto_healing`): the same
  health check (``/v2/health/ready`` on 8000) decides which nodes take
  traffic and which are recreated.
- A proxy-only subnetwork (``"ProxySubnet"``, ``10.42.16.0/23``, purpose
  ``REGIONAL_MANAGED_PROXY``) the load balancer's proxies run in, created
  in the nodes' network (a network holds one per region: pass
  ``proxy_subnet_cidr=None`` when yours already has one), and a firewall rule
  (``"ProxyFirewall"``) admitting only that range to port 8000 on the nodes.
"""

from __future__ import annotations

from lepton_cdk.core.framework import Construct, google
from lepton_cdk.core.interfaces import IHasId
from lepton_cdk.core.renames import RenamedAttribute
from lepton_cdk.core.validation import PropChecks

from .gpu_nodes import HEALTH_CHECK_PATH, SERVING_PORT, GpuNodeGroup
from .naming import stable_suffix

DEFAULT_PROXY_SUBNET_CIDR = "10.42.16.0/23"


class ModelServing(Construct):
    """The node group's model behind a private regional load balancer. Implements :class:`lepton_cdk.core.IModelServing`."""

    port = RenamedAttribute("listener_port")

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        node_group: GpuNodeGroup,
        certificate: IHasId | None = None,
        proxy_subnet_cidr: str | None = DEFAULT_PROXY_SUBNET_CIDR,
        serving_port: int = SERVING_PORT,
        health_check_path: str = HEALTH_CHECK_PATH,
        timeout_sec: int = 60,
        log_sample_rate: float = 1.0,
    ) -> None:
        """Create the load balancer, proxy subnetwork and firewall, and turn on the nodes' auto-healing.

        :param node_group: the nodes serving the model on ``serving_port``.
        :param certificate: a regional SSL certificate (anything with ``.id``)
            for HTTPS on 443. Default: none; HTTP on port 80 inside the VPC network.
        :param proxy_subnet_cidr: the range of the proxy-only subnetwork to
            create (/26 or larger, private, not overlapping the nodes').
            Default: ``10.42.16.0/23``; ``None`` when the network already has one in this region.
        :param serving_port: the port the nodes' server listens on. Default: 8000 (OIP v2 HTTP).
        :param health_check_path: the readiness path. Default: ``/v2/health/ready``.
        :param timeout_sec: seconds a request may take (1-86400). Default: 60.
        :param log_sample_rate: share of requests logged (0.0-1.0). Default: 1.0 (all).
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        if proxy_subnet_cidr is not None:
            checks.private_ipv4_range("proxy_subnet_cidr", proxy_subnet_cidr, largest=8, smallest=26, example=DEFAULT_PROXY_SUBNET_CIDR)
        checks.int_range("serving_port", serving_port, minimum=1, maximum=65535)
        if checks.known(health_check_path):
            checks.require(health_check_path.startswith("/"), f"health_check_path={health_check_path!r} must start with '/'; use e.g. {HEALTH_CHECK_PATH!r}")
        checks.int_range("timeout_sec", timeout_sec, minimum=1, maximum=86400)
        checks.require(isinstance(log_sample_rate, int | float) and 0.0 <= log_sample_rate <= 1.0,
                       f"log_sample_rate={log_sample_rate!r} must be between 0.0 and 1.0")
        checks.raise_if_any()

        self.node_group = node_group
        suffix = stable_suffix(self)
        name = f"lepton-serving-{suffix}"
        https = certificate is not None
        self.listener_port = 443 if https else 80
        self.scheme = "https" if https else "http"

        self.proxy_subnet = None
        self.proxy_firewall = None
        if proxy_subnet_cidr is not None:
            self.proxy_subnet = google.compute_subnetwork.ComputeSubnetwork(
                self, "ProxySubnet",
                name=f"{name}-proxy", network=node_group.network_id, ip_cidr_range=proxy_subnet_cidr,
                purpose="REGIONAL_MANAGED_PROXY", role="ACTIVE",
            )
            self.proxy_firewall = node_group.allow_ingress(
                self, "ProxyFirewall", name=f"{name}-proxies",
                description="lepton-cdk: the load balancer's proxies to the GPU nodes' model server",
                source_ranges=[proxy_subnet_cidr], port=serving_port,
            )
        health_check = node_group.enable_auto_healing(port=serving_port, path=health_check_path)

        bs = google.compute_region_backend_service
        self.backend_service = bs.ComputeRegionBackendService(
            self, "BackendService",
            name=name,
            description="lepton-cdk model serving",
            load_balancing_scheme="INTERNAL_MANAGED",
            protocol="HTTP",
            port_name="http",
            timeout_sec=timeout_sec,
            health_checks=[health_check.id],
            backend=[bs.ComputeRegionBackendServiceBackend(
                group=node_group.resource.instance_group, balancing_mode="UTILIZATION", capacity_scaler=1,
            )],
            log_config=bs.ComputeRegionBackendServiceLogConfig(enable=True, sample_rate=log_sample_rate),
        )
        self.url_map = google.compute_region_url_map.ComputeRegionUrlMap(
            self, "UrlMap", name=name, default_service=self.backend_service.id,
        )
        if https:
            self.proxy = google.compute_region_target_https_proxy.ComputeRegionTargetHttpsProxy(
                self, "Proxy", name=name, url_map=self.url_map.id, ssl_certificates=[certificate.id],
            )
        else:
            self.proxy = google.compute_region_target_http_proxy.ComputeRegionTargetHttpProxy(
                self, "Proxy", name=name, url_map=self.url_map.id,
            )
        self.resource = google.compute_forwarding_rule.ComputeForwardingRule(
            self, "Resource",
            name=name,
            load_balancing_scheme="INTERNAL_MANAGED",
            ip_protocol="TCP",
            port_range=str(self.listener_port),
            target=self.proxy.id,
            network=node_group.network_id,
            subnetwork=node_group.subnetwork_id,
            network_tier="PREMIUM",
            allow_global_access=False,
            # The proxies must have their subnetwork before the rule can be created.
            depends_on=[self.proxy_subnet] if self.proxy_subnet is not None else None,
        )

    @property
    def endpoint_url(self) -> str:
        """``http://<private address>`` (``https://`` with a certificate)."""
        return f"{self.scheme}://{self.resource.ip_address}"

    @property
    def ip_address(self) -> str:
        """The load balancer's private IP address."""
        return self.resource.ip_address

    @property
    def forwarding_rule_name(self) -> str:
        """The forwarding rule's name (the ``forwarding_rule_name`` label of the load balancer's metrics)."""
        return self.resource.name


__all__ = ["DEFAULT_PROXY_SUBNET_CIDR", "ModelServing"]
