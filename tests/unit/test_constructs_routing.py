"""TrafficSplit on both clouds: one name in front of the old and the new endpoint, split by weight, asserted on
synthesized JSON. A step of a cutover must change the weights and nothing else; health checks are attached where
each cloud can make them; both directions (and a `lepton serve` host as the old side) are stack settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lepton_cdk import aws as aws_constructs
from lepton_cdk import gcp as gcp_constructs
from lepton_cdk.app.config import ConfigError, InfraConfig
from lepton_cdk.core import ConstructValidationError
from lepton_cdk.core.framework import aws, google
from tests.support.manifests import write_fake_manifest
from tests.support.synth import only, resources, synth_json

PUBLIC_OLD, PUBLIC_NEW = "http://34.120.45.67", "http://52.4.10.20"


def aws_synth(build):
    return synth_json(build, provider=lambda s: aws.provider.AwsProvider(s, "aws", region="us-east-1"))


def gcp_synth(build):
    return synth_json(build, provider=lambda s: google.provider.GoogleProvider(s, "google", project="lepton-demo", region="us-central1"))


def aws_split(percent: int = 0, **props):
    props = {"zone": "Z0123", "record_name": "model.example.com", "old_endpoint": PUBLIC_OLD, "new_endpoint": PUBLIC_NEW,
             "new_weight_percent": percent, **props}
    return aws_synth(lambda stack: aws_constructs.TrafficSplit(stack, "Split", **props))


def gcp_split(percent: int = 0, **props):
    props = {"zone": "lepton-zone", "record_name": "model.example.com", "old_endpoint": PUBLIC_OLD, "new_endpoint": PUBLIC_NEW,
             "new_weight_percent": percent, **props}
    return gcp_synth(lambda stack: gcp_constructs.TrafficSplit(stack, "Split", **props))


def weighted(doc: dict) -> dict[str, dict]:
    """set_identifier -> the weighted aws_route53_record."""
    return {r["set_identifier"]: r for r in resources(doc, "aws_route53_record").values() if "set_identifier" in r}


def warnings(construct) -> list[str]:
    return [m.data for m in construct.node.metadata if m.type == "@cdktf/warn"]


def without_metadata(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    doc.pop("//", None)
    return doc


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    return write_fake_manifest(tmp_path_factory.mktemp("model"))


# -- AWS: Route 53 weighted records ---------------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [0, 1, 10, 50, 100])
def test_aws_two_weighted_records_of_one_name_split_by_percent(percent):
    doc, split = aws_split(percent)
    records = weighted(doc)
    assert set(records) == {"old", "new"}
    assert (records["old"]["weighted_routing_policy"]["weight"], records["new"]["weighted_routing_policy"]["weight"]) == (100 - percent, percent)
    assert {r["name"] for r in records.values()} == {"model.example.com"}
    assert {(r["type"], r["ttl"], r["zone_id"]) for r in records.values()} == {("A", 60, "Z0123")}
    assert (records["old"]["records"], records["new"]["records"]) == (["34.120.45.67"], ["52.4.10.20"])
    assert (split.old_weight, split.new_weight) == (100 - percent, percent)


def test_aws_a_step_changes_only_the_two_weights():
    ten, _ = aws_split(10)
    fifty, _ = aws_split(50)
    for records in (weighted(ten), weighted(fifty)):
        for r in records.values():
            r.pop("weighted_routing_policy")
    assert without_metadata(ten) == without_metadata(fifty)
    assert weighted(aws_split(10)[0])["new"]["weighted_routing_policy"] != weighted(aws_split(50)[0])["new"]["weighted_routing_policy"]


def test_aws_public_endpoints_get_http_health_checks_on_the_readiness_path():
    doc, split = aws_split(10, old_endpoint="https://old.example.com", new_endpoint="https://34.1.2.3:443")
    checks = resources(doc, "aws_route53_health_check")
    records = weighted(doc)
    by_side = {side: next(c for key, c in checks.items() if records[side]["health_check_id"] == f"${{aws_route53_health_check.{key}.id}}")
               for side in ("old", "new")}
    assert by_side["old"] == {**by_side["old"], "type": "HTTPS", "fqdn": "old.example.com", "port": 443, "enable_sni": True,
                              "resource_path": "/v2/health/ready", "request_interval": 30, "failure_threshold": 3}
    assert by_side["new"] == {**by_side["new"], "type": "HTTPS", "ip_address": "34.1.2.3", "port": 443}
    assert "fqdn" not in by_side["new"]
    assert split.endpoint_url == "https://model.example.com"
    assert warnings(split) == []


def test_aws_an_address_beside_a_host_name_goes_through_a_helper_record():
    doc, split = aws_split(0, old_endpoint="http://34.120.45.67", new_endpoint="http://model-new.example.net")
    records = weighted(doc)
    assert {r["type"] for r in records.values()} == {"CNAME"}
    assert records["old"]["records"] == ["lepton-old.model.example.com"] and records["new"]["records"] == ["model-new.example.net"]
    helpers = [r for r in resources(doc, "aws_route53_record").values() if "set_identifier" not in r]
    assert helpers == [{**helpers[0], "name": "lepton-old.model.example.com", "type": "A", "records": ["34.120.45.67"]}]
    assert split.record_type == "CNAME"


def test_aws_a_private_address_has_no_health_check_and_says_why():
    doc, split = aws_split(0, old_endpoint="http://10.30.0.7")
    records = weighted(doc)
    assert "health_check_id" not in records["old"] and "health_check_id" in records["new"]
    (warning,) = warnings(split)
    assert "10.30.0.7 is a private address" in warning and "lepton cutover check" in warning


def test_aws_model_serving_is_checked_through_a_cloudwatch_alarm_on_healthy_hosts(manifest_path):
    def build(stack):
        bucket = aws_constructs.ModelBucket(stack, "ModelBucket")
        nodes = aws_constructs.GpuNodeGroup(stack, "GpuNodes", model=bucket.upload_artifacts(manifest_path))
        serving = aws_constructs.ModelServing(stack, "Serving", node_group=nodes)
        return aws_constructs.TrafficSplit(stack, "Split", zone="Z0123", record_name="model.example.com", old_endpoint=PUBLIC_OLD,
                                           new_endpoint=serving, new_weight_percent=1)

    doc, split = aws_synth(build)
    records = weighted(doc)
    assert records["new"]["type"] == "CNAME" and records["new"]["records"] == ["${aws_lb.Serving_7A42E1DA.dns_name}"]
    assert records["old"]["records"] == ["lepton-old.model.example.com"]
    (alarm,) = [a for a in resources(doc, "aws_cloudwatch_metric_alarm").values() if "endpoint-unhealthy" in a["alarm_name"]]
    assert (alarm["namespace"], alarm["metric_name"], alarm["statistic"], alarm["comparison_operator"], alarm["threshold"]) == \
        ("AWS/ApplicationELB", "HealthyHostCount", "Minimum", "LessThanThreshold", 1)
    assert set(alarm["dimensions"]) == {"LoadBalancer", "TargetGroup"}
    new_check = next(c for c in resources(doc, "aws_route53_health_check").values() if c["type"] == "CLOUDWATCH_METRIC")
    assert new_check["insufficient_data_health_status"] == "LastKnownStatus"
    assert new_check["cloudwatch_alarm_name"].startswith("${aws_cloudwatch_metric_alarm.Split_NewHealthAlarm_")
    assert split.endpoint_url == "http://model.example.com"


def test_aws_health_checks_off_by_name():
    doc, _ = aws_split(0, health_checks=False)
    assert resources(doc, "aws_route53_health_check") == {}
    assert all("health_check_id" not in r for r in weighted(doc).values())


def test_aws_validation_reports_every_problem_once():
    with pytest.raises(ConstructValidationError) as caught:
        aws_split(101, old_endpoint="http://34.1.2.3:8080", new_endpoint="http://52.1.2.3:80", record_name="model", ttl_sec=-1,
                  health_check_interval_sec=20, health_check_path="ready")
    problems = caught.value.problems
    assert len(problems) == 6
    text = " ".join(problems)
    for expected in ("new_weight_percent=101", "ttl_sec=-1", "health_check_path='ready'", "record_name='model'",
                     "port 8080 and the new one on 80", "health_check_interval_sec=20"):
        assert expected in text
    assert str(caught.value).startswith("test/Split: 6 problems:")


@pytest.mark.parametrize("old, new, expected", [
    ("ftp://34.1.2.3", PUBLIC_NEW, "must be an http(s) URL"),
    ("http://34.1.2.3/v2/models", PUBLIC_NEW, "carries a path"),
    ("http://localhost", PUBLIC_NEW, "not a fully qualified host name"),
    ("https://34.1.2.3", PUBLIC_NEW, "speaks https and the new one http"),
    (PUBLIC_NEW, PUBLIC_NEW, "are the same address"),
])
def test_aws_bad_endpoints_name_the_prop_and_the_fix(old, new, expected):
    with pytest.raises(ConstructValidationError) as caught:
        aws_split(0, old_endpoint=old, new_endpoint=new)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


# -- GCP: Cloud DNS weighted round robin ---------------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [0, 10, 100])
def test_gcp_one_record_set_with_a_wrr_policy_split_by_percent(percent):
    doc, split = gcp_split(percent)
    record = only(doc, "google_dns_record_set")
    assert (record["name"], record["type"], record["ttl"], record["managed_zone"]) == ("model.example.com.", "A", 60, "lepton-zone")
    old, new = record["routing_policy"]["wrr"]
    assert (old["weight"], new["weight"]) == (100 - percent, percent)
    assert (old["rrdatas"], new["rrdatas"]) == (["34.120.45.67"], ["52.4.10.20"])
    assert split.endpoint_url == "http://model.example.com"


def test_gcp_a_step_changes_only_the_two_weights():
    ten, _ = gcp_split(10)
    fifty, _ = gcp_split(50)
    for doc in (ten, fifty):
        for item in only(doc, "google_dns_record_set")["routing_policy"]["wrr"]:
            item.pop("weight")
    assert without_metadata(ten) == without_metadata(fifty)


def test_gcp_two_public_addresses_are_health_checked_as_external_endpoints():
    doc, split = gcp_split(10)
    record = only(doc, "google_dns_record_set")
    check = only(doc, "google_compute_health_check")
    assert record["routing_policy"]["health_check"] == "${google_compute_health_check.Split_HealthCheck_467D2DE0.id}"
    assert [i["health_checked_targets"]["external_endpoints"] for i in record["routing_policy"]["wrr"]] == [["34.120.45.67"], ["52.4.10.20"]]
    assert check["source_regions"] == ["us-central1", "us-east4", "europe-west1"] and check["check_interval_sec"] == 30
    assert check["http_health_check"] == {"port": 80, "request_path": "/v2/health/ready"}
    assert split.health_checked == "external" and warnings(split) == []


def test_gcp_a_host_name_beside_an_address_is_published_through_a_helper_and_unchecked():
    doc, split = gcp_split(0, old_endpoint="http://old-model.example.com", new_endpoint=PUBLIC_NEW)
    records = resources(doc, "google_dns_record_set")
    main = next(r for r in records.values() if "routing_policy" in r)
    (helper,) = [r for r in records.values() if "routing_policy" not in r]
    assert main["type"] == "CNAME"
    assert [i["rrdatas"] for i in main["routing_policy"]["wrr"]] == [["old-model.example.com."], ["lepton-new.model.example.com."]]
    assert (helper["name"], helper["type"], helper["rrdatas"]) == ("lepton-new.model.example.com.", "A", ["52.4.10.20"])
    assert resources(doc, "google_compute_health_check") == {}
    assert all("health_checked_targets" not in i for i in main["routing_policy"]["wrr"])
    (warning,) = warnings(split)
    assert "without health checks" in warning


def test_gcp_two_model_servings_are_health_checked_as_internal_load_balancers(manifest_path):
    def build(stack):
        bucket = gcp_constructs.ModelBucket(stack, "ModelBucket")
        artifacts = bucket.upload_artifacts(manifest_path)
        servings = []
        for name, proxy in (("Blue", gcp_constructs.serving.DEFAULT_PROXY_SUBNET_CIDR), ("Green", None)):
            nodes = gcp_constructs.GpuNodeGroup(stack, f"{name}Nodes", model=artifacts)
            servings.append(gcp_constructs.ModelServing(stack, f"{name}Serving", node_group=nodes, proxy_subnet_cidr=proxy))
        return gcp_constructs.TrafficSplit(stack, "Split", zone="private-zone", record_name="model.internal.example.com",
                                           old_endpoint=servings[0], new_endpoint=servings[1], new_weight_percent=50)

    doc, split = gcp_synth(build)
    record = next(r for r in resources(doc, "google_dns_record_set").values() if "routing_policy" in r)
    targets = [i["health_checked_targets"]["internal_load_balancers"][0] for i in record["routing_policy"]["wrr"]]
    assert [t["ip_address"] for t in targets] == ["${google_compute_forwarding_rule.BlueServing_44CB969A.ip_address}",
                                                  "${google_compute_forwarding_rule.GreenServing_98F5E855.ip_address}"]
    assert {(t["load_balancer_type"], t["ip_protocol"], t["port"]) for t in targets} == {("regionalL7ilb", "tcp", "80")}
    assert all(t["network_url"].endswith(".network}") and t["region"].endswith(".region}") for t in targets)
    assert "health_check" not in record["routing_policy"] and split.health_checked == "internal"


def test_gcp_validation_names_the_prop_and_the_fix():
    with pytest.raises(ConstructValidationError) as caught:
        gcp_split(-1, health_check_interval_sec=10, health_check_regions=("us-central1",), zone="")
    text = str(caught.value)
    for expected in ("new_weight_percent=-1", "health_check_interval_sec=10", "exactly 3 regions", "zone=''"):
        assert expected in text


# -- the infra app: both directions, both clouds, and a `lepton serve` host, as stack settings -------------------------


def _app_doc(manifest_path: Path, tmp_path: Path, stack: str, **settings: str) -> dict:
    from lepton_cdk.app.main import build_app

    env = {"LEPTON_MANIFEST": str(manifest_path), "LEPTON_TARGET": "all", "LEPTON_CUTOVER_ZONE": "zone-1",
           "LEPTON_CUTOVER_RECORD": "model.internal.example.com", **settings}
    build_app(InfraConfig.from_env(env), tmp_path).synth()
    return json.loads((tmp_path / "stacks" / stack / "cdk.tf.json").read_text())


@pytest.mark.parametrize("dns, settings, old_value, new_value", [
    # GCP -> AWS, Route 53: the old endpoint is GCP's private load balancer address, the new one this stack's
    ("aws", {"LEPTON_CUTOVER_OLD_ENDPOINT": "http://10.30.0.7"}, ["lepton-old.model.internal.example.com"], ["${aws_lb.Serving_7A42E1DA.dns_name}"]),
    # AWS -> GCP, Route 53: the old endpoint is this stack's load balancer, the new one GCP's address
    ("aws", {"LEPTON_CUTOVER_NEW_ENDPOINT": "http://10.30.0.7"}, ["${aws_lb.Serving_7A42E1DA.dns_name}"], ["lepton-new.model.internal.example.com"]),
    # AWS -> GCP, Cloud DNS: the old endpoint is AWS's load balancer name, the new one this stack's address
    ("gcp", {"LEPTON_CUTOVER_OLD_ENDPOINT": "http://internal-lepton.us-east-1.elb.amazonaws.com"},
     ["internal-lepton.us-east-1.elb.amazonaws.com."], ["lepton-new.model.internal.example.com."]),
    # GCP -> AWS, Cloud DNS: the old endpoint is this stack's address, the new one AWS's load balancer name
    ("gcp", {"LEPTON_CUTOVER_NEW_ENDPOINT": "http://internal-lepton.us-east-1.elb.amazonaws.com"},
     ["lepton-old.model.internal.example.com."], ["internal-lepton.us-east-1.elb.amazonaws.com."]),
    # a laptop or on-premises host running `lepton serve` (behind port 80) as the old endpoint, AWS as the new one
    ("aws", {"LEPTON_CUTOVER_OLD_ENDPOINT": "http://serve.onprem.example.com:80"}, ["serve.onprem.example.com"],
     ["${aws_lb.Serving_7A42E1DA.dns_name}"]),
])
def test_both_directions_and_both_clouds_are_stack_settings(manifest_path, tmp_path, dns, settings, old_value, new_value):
    doc = _app_doc(manifest_path, tmp_path, f"lepton-{dns}", LEPTON_CUTOVER_DNS=dns, LEPTON_CUTOVER_WEIGHT="10", **settings)
    if dns == "aws":
        records = weighted(doc)
        assert (records["old"]["records"], records["new"]["records"]) == (old_value, new_value)
        assert (records["old"]["weighted_routing_policy"]["weight"], records["new"]["weighted_routing_policy"]["weight"]) == (90, 10)
    else:
        record = next(r for r in resources(doc, "google_dns_record_set").values() if "routing_policy" in r)
        old, new = record["routing_policy"]["wrr"]
        assert (old["rrdatas"], new["rrdatas"], old["weight"], new["weight"]) == (old_value, new_value, 90, 10)
    assert doc["output"]["traffic_endpoint_url"]["value"] == "http://model.internal.example.com"


def test_the_other_stack_gets_no_split(manifest_path, tmp_path):
    doc = _app_doc(manifest_path, tmp_path, "lepton-gcp", LEPTON_CUTOVER_DNS="aws", LEPTON_CUTOVER_OLD_ENDPOINT="http://10.30.0.7")
    assert "google_dns_record_set" not in doc.get("resource", {}) and "traffic_endpoint_url" not in doc.get("output", {})


def test_a_lepton_serve_host_on_another_port_is_refused_with_one_line(manifest_path, tmp_path):
    with pytest.raises(ConstructValidationError) as caught:
        _app_doc(manifest_path, tmp_path, "lepton-aws", LEPTON_CUTOVER_DNS="aws", LEPTON_CUTOVER_OLD_ENDPOINT="http://serve.onprem.example.com:8080")
    assert "port 8080 and the new one on 80" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("settings, expected", [
    ({"LEPTON_CUTOVER_WEIGHT": "10"}, "LEPTON_CUTOVER_WEIGHT='10' is not valid: it only applies with LEPTON_CUTOVER_DNS"),
    ({"LEPTON_CUTOVER_DNS": "azure"}, "LEPTON_CUTOVER_DNS='azure' is not valid: use aws"),
    ({"LEPTON_CUTOVER_DNS": "gcp", "LEPTON_TARGET": "aws"}, "LEPTON_TARGET does not build it"),
    ({"LEPTON_CUTOVER_DNS": "aws"}, "needs LEPTON_CUTOVER_ZONE"),
    ({"LEPTON_CUTOVER_DNS": "aws", "LEPTON_CUTOVER_ZONE": "Z1", "LEPTON_CUTOVER_RECORD": "model"}, "LEPTON_CUTOVER_RECORD='model'"),
    ({"LEPTON_CUTOVER_DNS": "aws", "LEPTON_CUTOVER_ZONE": "Z1", "LEPTON_CUTOVER_RECORD": "m.example.com"},
     "set LEPTON_CUTOVER_OLD_ENDPOINT or LEPTON_CUTOVER_NEW_ENDPOINT"),
    ({"LEPTON_CUTOVER_DNS": "aws", "LEPTON_CUTOVER_ZONE": "Z1", "LEPTON_CUTOVER_RECORD": "m.example.com",
      "LEPTON_CUTOVER_OLD_ENDPOINT": "ftp://old"}, "LEPTON_CUTOVER_OLD_ENDPOINT='ftp://old' must be an http(s) URL"),
    ({"LEPTON_CUTOVER_DNS": "aws", "LEPTON_CUTOVER_ZONE": "Z1", "LEPTON_CUTOVER_RECORD": "m.example.com",
      "LEPTON_CUTOVER_OLD_ENDPOINT": "http://10.1.2.3", "LEPTON_CUTOVER_WEIGHT": "150"}, "LEPTON_CUTOVER_WEIGHT='150' is not valid"),
])
def test_bad_cutover_settings_fail_with_one_line(settings, expected):
    with pytest.raises(ConfigError) as caught:
        InfraConfig.from_env(settings)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
