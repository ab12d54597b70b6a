"""GPU nodes in a regional managed instance group that fetch a model version and verify it at boot.

The mirror image of :mod:`lepton_cdk.aws.gpu_nodes`: the same public names (``docs/vocabulary.md``),
this cloud's resources. What repeats between the two modules is kept on purpose (aws/ and gcp/
never import each other); logic that is truly shared lives in ``lepton_cdk.core``.

Default settings:
- ``g2-standard-4`` with one NVIDIA L4 (24 GB): the current-generation
  inference GPU with the widest regional availability and the lowest price
  per GB of GPU memory; ``n1-standard-8`` with ``nvidia-tesla-t4`` is the
  budget alternative (pass ``instance_type`` and the accelerator follows).
  One node (``node_count=1``), spread over the region's zones.
- Image: Canonical's Ubuntu 22.04 accelerator image family
  (``ubuntu-os-accelerator-images``, ``ubuntu-accelerator-2204-amd64-with-nvidia-550``),
  whose NVIDIA driver is signed, so it loads with Secure Boot on; it ships
  ``gcloud``.
- Shielded VM: Secure Boot, vTPM and integrity monitoring on.
- ``on_host_maintenance = TERMINATE`` (required for GPUs), automatic restart on.
- Boot disk: 100 GiB ``pd-balanced``, deleted with the instance.
- No external IP (no ``access_config``). Without ``subnetwork``, a
  :class:`PrivateNetwork` is created (child ``"Network"``) with Private
  Google Access and no NAT.
- A dedicated service account (child ``"ServiceAccount"``) with no project
  roles; its only permission is ``roles/storage.objectViewer`` on the model
  bucket, conditioned on the model version's prefix.
- OS Login on, project-wide SSH keys blocked.
- Boot script: the same fetch-and-verify script as on AWS, using
  ``gcloud storage cp`` (``gsutil`` when gcloud is absent).
- Standard (on-demand) provisioning; ``spot=True`` uses Spot VMs
  (``provisioning_model = SPOT``, stopped on preemption, restarted by the
  group when capacity returns).
- Auto-healing: off until the nodes serve. :meth:`GpuNodeGroup.enable_auto_healing`
  (called by :class:`~lepton_cdk.gcp.ModelServing`, or ``auto_healing=True``)
  adds a regional HTTP health check (child ``"HealthCheck"``) on the serving
  port 8000, path ``/v2/health/ready``, every 10 s (3 failures: unhealthy),
  a firewall rule (``"HealthCheckFirewall"``) admitting Google's health
  checkers (``35.191.0.0/16``, ``130.211.0.0/22``) to that port on these
  nodes only (network tag ``lepton-gpu-<8 hex>``), and an auto-healing
  policy on the group that recreates a node failing it, 900 s after boot at
  the earliest (``health_check_grace_period_sec``, the same default as on
  AWS; the first boot pulls the multi-GB Triton image).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from lepton_cdk.contract.serving import TRITON_HTTP_PORT, TRITON_READY_PATH
from lepton_cdk.core.framework import Construct, TerraformResourceLifecycle, google
from lepton_cdk.core.gpu_nodes import DEFAULT_DISK_SIZE_GIB, DEFAULT_HEALTH_CHECK_GRACE_PERIOD_SEC, DEFAULT_NODE_COUNT
from lepton_cdk.core.interfaces import IHasId
from lepton_cdk.core.renames import RenamedAttribute, renamed_props
from lepton_cdk.core.startup_script import TritonLaunch, render_fetch_and_verify_script
from lepton_cdk.core.validation import PropChecks

from .bucket import ModelArtifacts
from .iam import ServiceAccount
from .naming import stable_suffix
from .network import PrivateNetwork

DEFAULT_INSTANCE_TYPE = "g2-standard-4"
DEFAULT_IMAGE = "projects/ubuntu-os-accelerator-images/global/images/family/ubuntu-accelerator-2204-amd64-with-nvidia-550"
N1_ACCELERATORS = frozenset({"nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p4", "nvidia-tesla-p100"})
_G2_GPUS = {"4": 1, "8": 1, "12": 1, "16": 1, "32": 1, "24": 2, "48": 4, "96": 8}
_BOOT_DISK_TYPES = frozenset({"pd-balanced", "pd-ssd", "pd-standard", "hyperdisk-balanced"})
_ZONE = re.compile(r"^[a-z]+-[a-z]+\d-[a-z]$")
SERVING_PORT = TRITON_HTTP_PORT  # where the nodes' Triton answers
HEALTH_CHECK_PATH = TRITON_READY_PATH
# Where Google's health checkers (and the load balancers' probes) come from.
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "130.211.0.0/22")


def default_accelerator(instance_type: str) -> tuple[str, int] | None:
    """The GPU (type, count) a machine type comes with or usually takes; None when it takes none."""
    family, _, rest = instance_type.partition("-")
    if family == "g2" and rest.startswith("standard-") and rest.removeprefix("standard-") in _G2_GPUS:
        return "nvidia-l4", _G2_GPUS[rest.removeprefix("standard-")]
    match = re.match(r"^(highgpu|megagpu|ultragpu)-(\d+)g$", rest)
    if family == "a2" and match:
        return ("nvidia-a100-80gb" if match.group(1) == "ultragpu" else "nvidia-tesla-a100"), int(match.group(2))
    if family == "n1":
        return "nvidia-tesla-t4", 1
    return None


def _label(value: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


class GpuNodeGroup(Construct):
    """A regional managed instance group of GPU VMs that fetch and verify a model at boot.

    Implements :class:`lepton_cdk.core.IGpuNodeGroup`.
    """

    target_size = RenamedAttribute("node_count")
    auto_healing_initial_delay_sec = RenamedAttribute("health_check_grace_period_sec")

    @renamed_props(machine_type="instance_type", source_image="image", boot_disk_size_gib="disk_size_gib", target_size="node_count",
                   auto_healing_initial_delay_sec="health_check_grace_period_sec")
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        model: ModelArtifacts,
        instance_type: str = DEFAULT_INSTANCE_TYPE,
        accelerator_type: str | None = None,
        accelerator_count: int | None = None,
        image: str = DEFAULT_IMAGE,
        disk_size_gib: int = DEFAULT_DISK_SIZE_GIB,
        boot_disk_type: str = "pd-balanced",
        node_count: int = DEFAULT_NODE_COUNT,
        subnetwork: IHasId | None = None,
        zones: Sequence[str] | None = None,
        secure_boot: bool = True,
        service_account_id: str | None = None,
        spot: bool = False,
        auto_healing: bool = False,
        health_check_grace_period_sec: int = DEFAULT_HEALTH_CHECK_GRACE_PERIOD_SEC,
    ) -> None:
        """Create the service account, instance template, group and (if needed) network.

        :param model: the model version the nodes fetch; they may read its prefix only.
        :param instance_type: the machine type: a GPU machine type (``g2-*``, ``a2-*``) or an
            ``n1-*`` type to attach GPUs to. Default: ``g2-standard-4``.
        :param accelerator_type: the GPU. Default: the one the machine type
            comes with (``nvidia-l4`` on g2, ``nvidia-tesla-a100`` on a2),
            ``nvidia-tesla-t4`` on n1.
        :param accelerator_count: GPUs per node. Default: the machine type's count (1 on n1).
        :param image: boot image or image family. Default: Ubuntu 22.04
            accelerator image with a signed NVIDIA 550 driver.
        :param disk_size_gib: boot disk size. Default: 100 GiB.
        :param boot_disk_type: ``pd-balanced``, ``pd-ssd``, ``pd-standard`` or
            ``hyperdisk-balanced``. Default: ``pd-balanced``.
        :param node_count: nodes to run (the group's target size; 0-1000). Default: 1.
        :param subnetwork: where nodes run. Default: a new :class:`PrivateNetwork`.
        :param zones: zones of the region to use. Default: all of the
            region's zones (list the ones that offer your GPU to avoid stockouts).
        :param secure_boot: Shielded VM Secure Boot. Default: on; turn it off
            only for an image whose GPU driver is unsigned.
        :param service_account_id: the nodes' service account id. Default: ``lepton-<8 hex>``.
        :param spot: run on Spot VMs (much cheaper, preemptible at any time).
            Default: standard on-demand VMs.
        :param auto_healing: recreate nodes that fail the serving health check,
            even without a load balancer. Default: off until
            :class:`~lepton_cdk.gcp.ModelServing` serves from the nodes, which turns it on.
        :param health_check_grace_period_sec: seconds after a node boots before
            the health check may recreate it (the auto-healing initial delay;
            boot, model download and verification and the Triton image pull
            must fit; 0-3600). Default: 900, as on AWS.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        gpu = default_accelerator(instance_type) if checks.known(instance_type) else None
        if checks.known(instance_type):
            checks.require(gpu is not None,
                           f"instance_type={instance_type!r} cannot carry NVIDIA GPUs; use a g2-standard-*, a2-* or n1-* machine type, e.g. {DEFAULT_INSTANCE_TYPE!r}")
        acc_type = accelerator_type or (gpu[0] if gpu else None)
        acc_count = accelerator_count if accelerator_count is not None else (gpu[1] if gpu else 1)
        if gpu is not None and checks.known(acc_type or "", acc_count):
            if instance_type.startswith("n1-"):
                checks.require(acc_type in N1_ACCELERATORS,
                               f"accelerator_type={acc_type!r} does not attach to n1 machines; use one of {', '.join(sorted(N1_ACCELERATORS))}")
                checks.require(acc_count in (1, 2, 4, 8), f"accelerator_count={acc_count} must be 1, 2, 4 or 8 on n1 machines")
            else:
                checks.require(acc_type == gpu[0], f"accelerator_type={acc_type!r} does not match {instance_type}, which comes with {gpu[0]}; leave it unset")
                checks.require(acc_count == gpu[1], f"accelerator_count={acc_count} does not match {instance_type}, which has {gpu[1]}; leave it unset")
        checks.int_range("disk_size_gib", disk_size_gib, minimum=10, maximum=65536)
        if checks.known(boot_disk_type):
            checks.require(boot_disk_type in _BOOT_DISK_TYPES, f"boot_disk_type={boot_disk_type!r} is not supported; use one of {', '.join(sorted(_BOOT_DISK_TYPES))}")
        checks.int_range("node_count", node_count, minimum=0, maximum=1000)
        for zone in zones or ():
            if checks.known(zone):
                checks.require(bool(_ZONE.match(zone)), f"zones contains {zone!r}, which is not a zone name; use names like 'us-central1-a'")
        if zones is not None:
            checks.require(len(zones) > 0, "zones=[] lists no zone; pass at least one or leave it unset for all of the region's zones")
        checks.require(isinstance(spot, bool), f"spot={spot!r} is not a bool; pass True for Spot VMs or False for standard ones")
        checks.int_range("health_check_grace_period_sec", health_check_grace_period_sec, minimum=0, maximum=3600)
        checks.raise_if_any()

        self._model = model
        suffix = stable_suffix(self)
        self._suffix = suffix
        self.spot = spot
        self.node_count = node_count
        self.health_check_grace_period_sec = health_check_grace_period_sec
        self.health_check = None
        self.health_check_firewall = None
        self.service_account = ServiceAccount(self, "ServiceAccount", account_id=service_account_id or f"lepton-gpu-{suffix}",
                                              display_name="lepton-cdk GPU nodes")
        self.grant = model.grant_read(self)

        self.network: PrivateNetwork | None = None
        if subnetwork is None:
            self.network = PrivateNetwork(self, "Network")
            subnetwork_id = self.network.subnetwork_id
            self.network_id: str = self.network.network_id
        else:
            subnetwork_id = subnetwork.id
            self.network_id = subnetwork.network
        self.subnetwork_id: str = subnetwork_id

        self.startup_script = render_fetch_and_verify_script(
            model_name=model.manifest.model_name,
            model_version=model.manifest.model_version,
            objects=model.objects,
            primary=model.model_object,
            copy_command=(
                'if command -v gcloud >/dev/null 2>&1; then\n'
                '  gcloud storage cp --no-user-output-enabled "$1" "$2"\n'
                'else\n'
                '  gsutil -q cp "$1" "$2"\n'
                'fi'
            ),
            triton=TritonLaunch.for_manifest(model.manifest),
        )
        t = google.compute_instance_template
        self.instance_template = t.ComputeInstanceTemplate(
            self, "Template",
            name_prefix="lepton-gpu-",
            description="lepton-cdk GPU node",
            machine_type=instance_type,
            guest_accelerator=[t.ComputeInstanceTemplateGuestAccelerator(type=acc_type, count=acc_count)],
            scheduling=t.ComputeInstanceTemplateScheduling(
                on_host_maintenance="TERMINATE", automatic_restart=not spot, preemptible=spot,
                provisioning_model="SPOT" if spot else "STANDARD",
                instance_termination_action="STOP" if spot else None,
            ),
            shielded_instance_config=t.ComputeInstanceTemplateShieldedInstanceConfig(
                enable_secure_boot=secure_boot, enable_vtpm=True, enable_integrity_monitoring=True,
            ),
            disk=[t.ComputeInstanceTemplateDisk(
                boot=True, auto_delete=True, source_image=image, disk_size_gb=disk_size_gib, disk_type=boot_disk_type,
            )],
            network_interface=[t.ComputeInstanceTemplateNetworkInterface(subnetwork=subnetwork_id)],
            service_account=t.ComputeInstanceTemplateServiceAccount(
                email=self.service_account.email, scopes=["https://www.googleapis.com/auth/cloud-platform"],
            ),
            metadata={
                "startup-script": self.startup_script,
                "enable-oslogin": "TRUE",
                "block-project-ssh-keys": "true",
            },
            labels={"lepton-model": _label(model.manifest.model_name), "lepton-model-version": _label(model.manifest.model_version)},
            # A template cannot change in place; the group must move to the new one before the old goes.
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        m = google.compute_region_instance_group_manager
        self.resource = m.ComputeRegionInstanceGroupManager(
            self, "Resource",
            name=f"lepton-gpu-{suffix}",
            base_instance_name="lepton-gpu",
            version=[m.ComputeRegionInstanceGroupManagerVersion(name="primary", instance_template=self.instance_template.self_link_unique)],
            target_size=node_count,
            distribution_policy_zones=list(zones) if zones else None,
            wait_for_instances=False,
        )
        if auto_healing:
            self.enable_auto_healing()

    @property
    def network_tag(self) -> str:
        """The network tag firewall rules use to reach these nodes (added by :meth:`enable_auto_healing`)."""
        return f"lepton-gpu-{self._suffix}"

    def enable_auto_healing(self, *, port: int = SERVING_PORT, path: str = HEALTH_CHECK_PATH) -> Any:
        """Recreate nodes that fail an HTTP health check on ``port``/``path``; returns the health check.

        Creates (once) the regional health check (child ``"HealthCheck"``),
        the firewall rule admitting Google's health checkers to ``port`` on
        these nodes (``"HealthCheckFirewall"``), tags the nodes with
        :attr:`network_tag`, names the group's ``http`` port and sets the
        group's auto-healing policy. A second call returns the same check.
        """
        if self.health_check is not None:
            return self.health_check
        hc = google.compute_region_health_check
        self.health_check = hc.ComputeRegionHealthCheck(
            self, "HealthCheck",
            name=f"lepton-gpu-{self._suffix}",
            description="lepton-cdk GPU nodes: the model server is ready",
            check_interval_sec=10, timeout_sec=5, healthy_threshold=2, unhealthy_threshold=3,
            http_health_check=hc.ComputeRegionHealthCheckHttpHealthCheck(port=port, request_path=path),
            log_config=hc.ComputeRegionHealthCheckLogConfig(enable=True),
        )
        self.health_check_firewall = self.allow_ingress(
            self, "HealthCheckFirewall", name=f"lepton-gpu-{self._suffix}-health",
            description="lepton-cdk: Google health checkers to the GPU nodes' model server",
            source_ranges=HEALTH_CHECK_RANGES, port=port,
        )
        self.instance_template.tags = [self.network_tag]
        m = google.compute_region_instance_group_manager
        self.resource.put_named_port([m.ComputeRegionInstanceGroupManagerNamedPort(name="http", port=port)])
        self.resource.put_auto_healing_policies(
            health_check=self.health_check.id, initial_delay_sec=self.health_check_grace_period_sec,
        )
        return self.health_check

    def allow_ingress(self, scope: Construct, id: str, *, name: str, description: str, source_ranges: Sequence[str], port: int) -> Any:
        """A firewall rule (child ``id`` of ``scope``) admitting ``source_ranges`` to TCP ``port`` on these nodes only.

        The rule targets :attr:`network_tag`, which :meth:`enable_auto_healing` puts on the nodes.
        """
        fw = google.compute_firewall
        return fw.ComputeFirewall(
            scope, id,
            name=name,
            description=description,
            network=self.network_id,
            direction="INGRESS",
            source_ranges=list(source_ranges),
            target_tags=[self.network_tag],
            allow=[fw.ComputeFirewallAllow(protocol="tcp", ports=[str(port)])],
        )

    @property
    def grant_principal(self) -> ServiceAccount:
        """The nodes' service account."""
        return self.service_account

    @property
    def node_group_name(self) -> str:
        """The managed instance group's name."""
        return self.resource.name

    @property
    def model(self) -> ModelArtifacts:
        """The model version the nodes fetch."""
        return self._model
