"""One DNS name in front of the old and the new model endpoint, split by weight: a Cloud DNS record set with a
weighted round robin (WRR) routing policy, health-checked where Cloud DNS can check both endpoints.

A cutover moves callers from one endpoint to the other by changing one
number, ``new_weight_percent``: the percent of DNS answers that name the new
endpoint. Each step is a plan that changes only ``routing_policy.wrr[].weight``
(``lepton review`` names such a change a traffic step), and rolling back is
setting it to 0.

Default settings:
- One record set (child ``"Resource"``) whose WRR policy has two items, the
  old endpoint first with weight ``100 - new_weight_percent``, then the new
  one with ``new_weight_percent``; TTL 60 s, so a step or a rollback reaches
  callers within about a minute.
- Record type: ``A``/``AAAA`` when both endpoints are addresses of one
  family, else ``CNAME``; an IP address beside a host name is then published
  under a helper record set ``lepton-old.<name>`` / ``lepton-new.<name>``
  (children ``"OldAddress"`` / ``"NewAddress"``) that the WRR item names.
- Health checks, where Cloud DNS supports them for *both* items (it checks
  every item of a health-checked policy, and checks IP addresses only):
  two :class:`~lepton_cdk.gcp.ModelServing` load balancers are checked as
  internal load balancers (private zones); two public IP addresses as
  external endpoints with a global HTTP(S) health check (``"HealthCheck"``,
  ``/v2/health/ready`` every 30 s from three regions, unhealthy after 3
  failures; public zones). Any other pair (a host name, a private address
  of another network, or one of each kind) is published without health
  checks and a warning says so: gate the cutover with ``lepton cutover
  check``'s ``healthy`` gate instead. A failed item's share goes to the
  healthy one.
- Both endpoints must serve on the same port: a DNS answer carries none.

The managed zone is yours (public, or private to the callers' networks):
pass its name.
"""

from __future__ import annotations

from typing import Any

from lepton_cdk.core.framework import Annotations, Construct, google
from lepton_cdk.core.routing import (
    DEFAULT_HEALTH_CHECK_PATH,
    DEFAULT_TTL_SEC,
    SIDES,
    RoutedAddress,
    check_split_props,
    parse_endpoint,
    split_record_type,
    split_weights,
)
from lepton_cdk.core.validation import PropChecks

from .naming import stable_suffix
from .serving import ModelServing

# Cloud DNS checks an external endpoint from exactly three regions.
DEFAULT_HEALTH_CHECK_REGIONS = ("us-central1", "us-east4", "europe-west1")
# Global health checks with source regions must run at least every 30 s.
MIN_EXTERNAL_HEALTH_CHECK_INTERVAL_SEC = 30
# The type Cloud DNS gives the regional internal Application Load Balancer that ModelServing builds.
INTERNAL_LOAD_BALANCER_TYPE = "regionalL7ilb"


class TrafficSplit(Construct):
    """A DNS name answering with the old or the new endpoint by weight (Cloud DNS WRR), health-checked where Cloud DNS can."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        zone: Any,
        record_name: str,
        old_endpoint: str | ModelServing,
        new_endpoint: str | ModelServing,
        new_weight_percent: int = 0,
        ttl_sec: int = DEFAULT_TTL_SEC,
        health_checks: bool = True,
        health_check_path: str = DEFAULT_HEALTH_CHECK_PATH,
        health_check_interval_sec: int = 30,
        health_check_failure_threshold: int = 3,
        health_check_regions: tuple[str, str, str] = DEFAULT_HEALTH_CHECK_REGIONS,
    ) -> None:
        """Create the record set with its WRR policy, any helper record set and the health check.

        :param zone: the Cloud DNS managed zone holding the name: its name or a
            ``google_dns_managed_zone`` (anything with ``.name``).
        :param record_name: the name callers use, e.g. ``model.internal.example.com``
            (the trailing dot Cloud DNS needs is added).
        :param old_endpoint: where traffic moves from: a URL or address
            (``http://10.30.0.7``, ``https://old.example.com``) or a
            :class:`~lepton_cdk.gcp.ModelServing` of this stack.
        :param new_endpoint: where traffic moves to, in the same forms.
        :param new_weight_percent: percent of answers naming the new endpoint
            (0-100; the old one gets the rest). Default: 0, all traffic on the old endpoint.
        :param ttl_sec: how long resolvers keep an answer. Default: 60 s.
        :param health_checks: health-check both items where Cloud DNS can. Default: on.
        :param health_check_path: readiness path of the external endpoints' check. Default: ``/v2/health/ready``.
        :param health_check_interval_sec: seconds between external checks (30-300). Default: 30.
        :param health_check_failure_threshold: consecutive failures (1-10) before an endpoint is unhealthy. Default: 3.
        :param health_check_regions: the three regions external endpoints are checked
            from. Default: us-central1, us-east4, europe-west1.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        problems: list[str] = []
        routed = {side: self._routed(endpoint, f"{side}_endpoint") for side, endpoint in zip(SIDES, (old_endpoint, new_endpoint), strict=True)}
        check_split_props(problems, old=routed["old"], new=routed["new"], new_weight_percent=new_weight_percent, ttl_sec=ttl_sec,
                          health_check_path=health_check_path, record_name=record_name)
        checks.add(*problems)
        checks.int_range("health_check_interval_sec", health_check_interval_sec, minimum=MIN_EXTERNAL_HEALTH_CHECK_INTERVAL_SEC,
                         maximum=300, fix="Cloud DNS checks external endpoints at most every 30 s")
        checks.int_range("health_check_failure_threshold", health_check_failure_threshold, minimum=1, maximum=10)
        checks.require(len(tuple(health_check_regions)) == 3,
                       f"health_check_regions={health_check_regions!r} must name exactly 3 regions (Cloud DNS checks from three)")
        zone_name = getattr(zone, "name", zone)
        checks.require(isinstance(zone_name, str) and bool(zone_name.strip()),
                       f"zone={zone!r} is not a managed zone; pass its name or a google_dns_managed_zone")
        checks.raise_if_any()

        self.record_name = record_name.rstrip(".")
        fqdn = self.record_name + "."
        self.new_weight_percent = new_weight_percent
        self.old_weight, self.new_weight = split_weights(new_weight_percent)
        addresses: dict[str, RoutedAddress] = routed  # type: ignore[assignment]  # validated above
        endpoints = dict(zip(SIDES, (old_endpoint, new_endpoint), strict=True))
        self.record_type = split_record_type(addresses["old"], addresses["new"])
        self.helper_records: dict[str, Any] = {}
        values: dict[str, str] = {}
        for side in SIDES:
            target = addresses[side]
            if target.record_type == self.record_type:
                # Cloud DNS wants host names in record data fully qualified, with the trailing dot.
                values[side] = target.address + "." if target.record_type == "CNAME" else target.address
                continue
            helper = f"lepton-{side}.{fqdn}"
            self.helper_records[side] = google.dns_record_set.DnsRecordSet(
                self, f"{side.capitalize()}Address", managed_zone=zone_name, name=helper, type=target.record_type, ttl=ttl_sec,
                rrdatas=[target.address],
            )
            values[side] = helper

        self.health_check = None
        self.health_checked = self._health_check_kind(endpoints, addresses) if health_checks else None
        if health_checks and self.health_checked is None:
            Annotations.of(self).add_warning(
                "Cloud DNS health-checks a weighted policy only when it can check every item, and it checks IP addresses only "
                "(two ModelServing load balancers, or two public addresses): this split is published without health checks. "
                "Gate each step with `lepton cutover check` (the 'healthy' gate) instead.")
        if self.health_checked == "external":
            self.health_check = self._external_health_check(addresses["new"], health_check_path, health_check_interval_sec,
                                                            health_check_failure_threshold, health_check_regions)

        rp = google.dns_record_set
        weights = {"old": self.old_weight, "new": self.new_weight}
        items = []
        for side in SIDES:
            targets = None
            if self.health_checked == "internal":
                targets = rp.DnsRecordSetRoutingPolicyWrrHealthCheckedTargets(
                    internal_load_balancers=[self._internal_target(endpoints[side])])
            elif self.health_checked == "external":
                targets = rp.DnsRecordSetRoutingPolicyWrrHealthCheckedTargets(external_endpoints=[addresses[side].address])
            # The traffic step: the weights are the only values a cutover step changes.
            items.append(rp.DnsRecordSetRoutingPolicyWrr(weight=weights[side], rrdatas=[values[side]], health_checked_targets=targets))
        self.resource = rp.DnsRecordSet(
            self, "Resource",
            managed_zone=zone_name,
            name=fqdn,
            type=self.record_type,
            ttl=ttl_sec,
            routing_policy=rp.DnsRecordSetRoutingPolicy(
                wrr=items, health_check=self.health_check.id if self.health_check is not None else None),
        )
        self.port = addresses["new"].effective_port if addresses["new"].port is not None else addresses["old"].effective_port
        self.scheme = addresses["new"].scheme

    @staticmethod
    def _routed(endpoint: str | ModelServing, prop: str) -> RoutedAddress | str:
        if isinstance(endpoint, ModelServing):
            return RoutedAddress(address=endpoint.ip_address, record_type="A", scheme=endpoint.scheme, port=endpoint.listener_port,
                                 private=True)
        if not isinstance(endpoint, str):
            return f"{prop}={type(endpoint).__name__} is not an endpoint; pass a URL, an address or a gcp.ModelServing"
        return parse_endpoint(endpoint, prop)

    @staticmethod
    def _health_check_kind(endpoints: dict[str, Any], addresses: dict[str, RoutedAddress]) -> str | None:
        if all(isinstance(endpoints[side], ModelServing) for side in SIDES):
            return "internal"
        if all(isinstance(endpoints[side], str) and addresses[side].record_type in ("A", "AAAA") and not addresses[side].private
               for side in SIDES):
            return "external"
        return None

    @staticmethod
    def _internal_target(serving: ModelServing) -> Any:
        rule = serving.resource
        return google.dns_record_set.DnsRecordSetRoutingPolicyWrrHealthCheckedTargetsInternalLoadBalancers(
            ip_address=rule.ip_address,
            ip_protocol="tcp",
            # The forwarding rule reads back its network as the full self link Cloud DNS asks for.
            network_url=rule.network,
            port=str(serving.listener_port),
            project=rule.project,
            region=rule.region,
            load_balancer_type=INTERNAL_LOAD_BALANCER_TYPE,
        )

    def _external_health_check(self, target: RoutedAddress, path: str, interval_sec: int, failures: int,
                               regions: tuple[str, str, str]) -> Any:
        hc = google.compute_health_check
        https = target.scheme == "https"
        check = hc.ComputeHealthCheck(
            self, "HealthCheck",
            name=f"lepton-split-{stable_suffix(self)}",
            description="lepton-cdk: readiness of both endpoints of a traffic split (Cloud DNS WRR)",
            check_interval_sec=interval_sec,
            timeout_sec=min(10, interval_sec),
            unhealthy_threshold=failures,
            healthy_threshold=2,
            source_regions=list(regions),
            https_health_check=hc.ComputeHealthCheckHttpsHealthCheck(port=target.effective_port, request_path=path) if https else None,
            http_health_check=None if https else hc.ComputeHealthCheckHttpHealthCheck(port=target.effective_port, request_path=path),
        )
        return check

    @property
    def endpoint_url(self) -> str:
        """The URL callers use: ``<scheme>://<record_name>[:port]``."""
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{self.record_name}" + ("" if self.port == default else f":{self.port}")


__all__ = ["DEFAULT_HEALTH_CHECK_REGIONS", "TrafficSplit"]
