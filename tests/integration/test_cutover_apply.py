"""The traffic split for real against moto: Route 53 weighted records with health checks, applied, re-planned
(no drift), stepped 0 -> 10 -> 100 -> back to 0 by re-applying with a new LEPTON_CUTOVER_WEIGHT (each step's plan
changes the two weights and nothing else), every weight read back through the Route 53 API, then destroyed.

The stack holds the AWS provider the infra app makes for an emulator and one ``aws.TrafficSplit`` built from the
app's own LEPTON_CUTOVER_* settings (``InfraConfig``), moving traffic from a GCP endpoint (old, a public address)
to an AWS one (new, a public host name), both checked over HTTP by Route 53. The reference stack's default, a
split in front of its own internal load balancer (checked through a CloudWatch alarm), is synth-tested in
tests/unit/test_constructs_routing.py: moto keeps none of a CLOUDWATCH_METRIC check's fields, so applying it
would only measure moto. The stack is kept to the split so that the
AWS provider's wait for each Route 53 change (10-30 s, not configurable) is the only slow part.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lepton_cdk.app.config import InfraConfig
from tests.support.emulators import aws_env, boto3_client
from tests.support.terraform import Terraform, planned_changes, tool_env

pytestmark = pytest.mark.integration

STACK = "cutover"
RECORD = "model.cutover.example.com"
OLD_ADDRESS = "34.120.45.67"  # a public address of the old (GCP) endpoint
NEW_HOST = "model-new.example.net"  # the new (AWS) endpoint's public name
OLD_RECORD = "aws_route53_record.TrafficSplit_Old_403C60FE"
NEW_RECORD = "aws_route53_record.TrafficSplit_New_D285D6AF"


def _synth(outdir: Path, settings: dict[str, str]) -> Path:
    """Synthesize the stack for ``settings`` (LEPTON_* as the infra app reads them); returns its folder."""
    from lepton_cdk.app.stacks.aws import aws_provider
    from lepton_cdk.aws import TrafficSplit
    from lepton_cdk.core.framework import App, LocalBackend, TerraformStack

    config = InfraConfig.from_env(settings)
    split = config.traffic_split
    app = App(outdir=str(outdir))
    stack = TerraformStack(app, STACK)
    # state beside the output, never cdktf's default (the current folder: the repository root)
    LocalBackend(stack, path=str(outdir.parent / f"terraform.{STACK}.tfstate"))
    aws_provider(stack, config)
    TrafficSplit(stack, "TrafficSplit", zone=split.zone, record_name=split.record_name, old_endpoint=split.old_endpoint,
                 new_endpoint=split.new_endpoint, new_weight_percent=split.weight_percent)
    app.synth()
    return outdir / "stacks" / STACK


def _weights(route53, zone_id: str) -> dict[str, tuple[int, str | None, list[str]]]:
    """set_identifier -> (weight, health check id, values) of the weighted records of RECORD, read from Route 53."""
    found = {}
    for rrset in route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]:
        if rrset["Name"].rstrip(".") == RECORD and "SetIdentifier" in rrset:
            found[rrset["SetIdentifier"]] = (rrset["Weight"], rrset.get("HealthCheckId"), [r["Value"] for r in rrset["ResourceRecords"]])
    return found


def test_weighted_records_apply_step_by_step_and_read_back(moto, tf_cli_config, tmp_path):
    route53 = boto3_client("route53", moto)
    zone_id = route53.create_hosted_zone(Name="cutover.example.com", CallerReference=str(time.time()))["HostedZone"]["Id"].split("/")[-1]
    settings = {
        "LEPTON_TARGET": "aws", "LEPTON_AWS_ENDPOINT": moto, "LEPTON_CUTOVER_DNS": "aws", "LEPTON_CUTOVER_ZONE": zone_id,
        "LEPTON_CUTOVER_RECORD": RECORD, "LEPTON_CUTOVER_OLD_ENDPOINT": f"http://{OLD_ADDRESS}",
        "LEPTON_CUTOVER_NEW_ENDPOINT": f"http://{NEW_HOST}",
    }
    stack_dir = _synth(tmp_path / "cdktf.out", {**settings, "LEPTON_CUTOVER_WEIGHT": "0"})
    tf = Terraform(stack_dir, tool_env({**aws_env(moto), "TF_CLI_CONFIG_FILE": str(tf_cli_config)}))
    tf("init", "-input=false", "-no-color")
    tf("validate", "-no-color")
    tf("apply", "-auto-approve", "-input=false", "-no-color")
    plan = tf("plan", "-detailed-exitcode", "-input=false", "-no-color", ok_codes=(0, 2))
    assert plan.returncode == 0, f"a re-plan right after apply wants changes (drift):\n{plan.stdout[-6000:]}"

    # -- what Route 53 holds: two weighted records of one name, each with its health check ---------------------------
    records = _weights(route53, zone_id)
    assert set(records) == {"old", "new"} and (records["old"][0], records["new"][0]) == (100, 0)
    assert records["old"][2] == [f"lepton-old.{RECORD}"], "the old address is published under a helper A record"
    assert records["new"][2] == [NEW_HOST]
    helper = [r for r in route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
              if r["Name"].rstrip(".") == f"lepton-old.{RECORD}"]
    assert [(r["Type"], r["ResourceRecords"]) for r in helper] == [("A", [{"Value": OLD_ADDRESS}])]
    old_check = route53.get_health_check(HealthCheckId=records["old"][1])["HealthCheck"]["HealthCheckConfig"]
    assert (old_check["Type"], old_check["IPAddress"], old_check["Port"], old_check["ResourcePath"]) == \
        ("HTTP", OLD_ADDRESS, 80, "/v2/health/ready")
    new_check = route53.get_health_check(HealthCheckId=records["new"][1])["HealthCheck"]["HealthCheckConfig"]
    assert (new_check["Type"], new_check["FullyQualifiedDomainName"], new_check["Port"], new_check["ResourcePath"]) == \
        ("HTTP", NEW_HOST, 80, "/v2/health/ready")
    assert all((c["RequestInterval"], c["FailureThreshold"]) == (30, 3) for c in (old_check, new_check))

    # -- each step is a new LEPTON_CUTOVER_WEIGHT: its plan changes the two weights and nothing else ------------------
    seen = {}
    for weight in (10, 100, 0):
        _synth(tmp_path / "cdktf.out", {**settings, "LEPTON_CUTOVER_WEIGHT": str(weight)})
        tf("plan", "-input=false", "-no-color", "-out=step.bin", ok_codes=(0, 2))
        assert planned_changes(tf, "step.bin") == {OLD_RECORD: (("update",), ("weighted_routing_policy",)),
                                                   NEW_RECORD: (("update",), ("weighted_routing_policy",))}, \
            f"the step to {weight}% changes more than the two weights"
        tf("apply", "-auto-approve", "-input=false", "-no-color", "step.bin")
        records = _weights(route53, zone_id)
        seen[weight] = (records["old"][0], records["new"][0])
    assert seen == {10: (90, 10), 100: (0, 100), 0: (100, 0)}

    # -- destroy: the records and their health checks are gone --------------------------------------------------------
    tf("destroy", "-auto-approve", "-input=false", "-no-color")
    assert _weights(route53, zone_id) == {}
    assert route53.list_health_checks()["HealthChecks"] == []
    print(f"\ntraffic split against moto, seconds: {json.dumps(tf.timings)}; weights (old, new) read back: {seen}")
