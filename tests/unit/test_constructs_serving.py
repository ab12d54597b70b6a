"""ModelServing / ManagedModelServing on both clouds, and the GpuNodeGroup extras they rely on (spot,
health-check replacement): defaults, overrides, validation, grants and pinned logical ids, asserted on
synthesized JSON. The default stacks are synthesized once per module; everything runs in this one
process, so the provider bindings load once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lepton_cdk import aws as lepton_aws
from lepton_cdk import gcp as lepton_gcp
from lepton_cdk.checks import LEPTON_CORE, evaluate
from lepton_cdk.core import ConstructValidationError, IGpuNodeGroup, IModelServing
from lepton_cdk.core.framework import TerraformOutput, aws, google
from tests.support.manifests import write_fake_manifest
from tests.support.synth import at, logical_ids, only, ref, resources, synth_json

LB = "Serving_7A42E1DA"
TG = "Serving_TargetGroup_A228DBF3"
LB_SG = "Serving_SecurityGroup_DD10E716"
NODE_SG = "GpuNodes_SecurityGroup_3EE7FF91"
BUCKET_KEY = "ModelBucket_Key_C4835771"


def aws_synth(build):
    return synth_json(build, provider=lambda s: aws.provider.AwsProvider(s, "aws", region="us-east-1"))


def gcp_synth(build):
    return synth_json(build, provider=lambda s: google.provider.GoogleProvider(s, "google", project="lepton-demo", region="us-central1"))


def failing_rules(doc: dict) -> list[tuple[str, str]]:
    """(rule id, address) of every LeptonCore finding in ``doc`` (no suppressions)."""
    return [(f.rule, f.address) for f in evaluate(doc, stack="test", pack=LEPTON_CORE)]


def outputs(doc: dict) -> dict[str, str]:
    return {name: o["value"] for name, o in doc.get("output", {}).items()}


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    return write_fake_manifest(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def aws_defaults(manifest_path):
    """Bucket, node group, load balancer serving and SageMaker serving, all with their defaults."""

    def build(stack):
        artifacts = lepton_aws.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        nodes = lepton_aws.GpuNodeGroup(stack, "GpuNodes", model=artifacts)
        serving = lepton_aws.ModelServing(stack, "Serving", node_group=nodes)
        managed = lepton_aws.ManagedModelServing(stack, "Managed", model=artifacts)
        TerraformOutput(stack, "serving_endpoint_url", value=serving.endpoint_url)
        TerraformOutput(stack, "sagemaker_endpoint_url", value=managed.endpoint_url)
        return nodes, serving, managed

    return aws_synth(build)


@pytest.fixture(scope="module")
def gcp_defaults(manifest_path):
    def build(stack):
        artifacts = lepton_gcp.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        nodes = lepton_gcp.GpuNodeGroup(stack, "GpuNodes", model=artifacts)
        serving = lepton_gcp.ModelServing(stack, "Serving", node_group=nodes)
        TerraformOutput(stack, "serving_endpoint_url", value=serving.endpoint_url)
        return nodes, serving

    return gcp_synth(build)


# -- AWS: ModelServing (internal ALB) -------------------------------------------------------------------------------


def test_aws_serving_is_an_internal_alb_in_the_node_subnets(aws_defaults):
    doc, (nodes, serving, managed) = aws_defaults
    lb = only(doc, "aws_lb")
    assert lb["internal"] is True and lb["load_balancer_type"] == "application"
    assert lb["drop_invalid_header_fields"] is True and lb["enable_deletion_protection"] is False and lb["idle_timeout"] == 60
    assert sorted(lb["subnets"]) == sorted(ref("aws_subnet", n, "id") for n in resources(doc, "aws_subnet"))
    assert lb["security_groups"] == [ref("aws_security_group", LB_SG, "id")]
    assert outputs(doc)["serving_endpoint_url"] == f"http://{ref('aws_lb', LB, 'dns_name')}"
    assert isinstance(serving, IModelServing) and isinstance(managed, IModelServing) and isinstance(nodes, IGpuNodeGroup)


def test_aws_target_group_checks_oip_readiness_on_port_8000(aws_defaults):
    doc, _ = aws_defaults
    tg = only(doc, "aws_lb_target_group")
    assert (tg["port"], tg["protocol"], tg["target_type"], tg["deregistration_delay"]) == (8000, "HTTP", "instance", "30")
    assert tg["vpc_id"] == ref("aws_vpc", "GpuNodes_Network_1D4C1C9A", "id")
    assert tg["health_check"] == {"enabled": True, "protocol": "HTTP", "port": "traffic-port", "path": "/v2/health/ready", "matcher": "200",
                                  "interval": 15, "timeout": 5, "healthy_threshold": 2, "unhealthy_threshold": 3}
    assert tg["lifecycle"] == {"create_before_destroy": True}
    listener = only(doc, "aws_lb_listener")
    assert (listener["port"], listener["protocol"]) == (80, "HTTP") and "certificate_arn" not in listener
    assert listener["default_action"] == [{"type": "forward", "target_group_arn": ref("aws_lb_target_group", TG, "arn")}]


def test_aws_nodes_behind_the_alb_are_replaced_when_unhealthy(aws_defaults):
    doc, (nodes, _, _) = aws_defaults
    asg = only(doc, "aws_autoscaling_group")
    assert asg["health_check_type"] == "ELB" and asg["health_check_grace_period"] == 900
    assert asg["target_group_arns"] == [ref("aws_lb_target_group", TG, "arn")]
    assert nodes.target_group_arns and len(nodes.target_group_arns) == 1


def test_aws_security_groups_admit_the_vpc_to_the_alb_and_only_the_alb_to_the_nodes(aws_defaults):
    doc, _ = aws_defaults
    ingress = resources(doc, "aws_vpc_security_group_ingress_rule")
    assert set(ingress) == {"Serving_SecurityGroupIngress-0_3329A155", "Serving_NodeIngress-0_AFA789EC"}
    callers = ingress["Serving_SecurityGroupIngress-0_3329A155"]
    assert callers["cidr_ipv4"] == ref("aws_vpc", "GpuNodes_Network_1D4C1C9A", "cidr_block")
    assert (callers["from_port"], callers["to_port"], callers["security_group_id"]) == (80, 80, ref("aws_security_group", LB_SG, "id"))
    nodes_in = ingress["Serving_NodeIngress-0_AFA789EC"]
    assert nodes_in["security_group_id"] == ref("aws_security_group", NODE_SG, "id")
    assert nodes_in["referenced_security_group_id"] == ref("aws_security_group", LB_SG, "id")
    assert (nodes_in["from_port"], nodes_in["to_port"]) == (8000, 8000) and "cidr_ipv4" not in nodes_in
    egress = at(doc, "aws_vpc_security_group_egress_rule", "Serving/SecurityGroupEgress-0")
    assert egress["referenced_security_group_id"] == ref("aws_security_group", NODE_SG, "id") and egress["from_port"] == 8000


def test_aws_default_stack_passes_the_policy_pack(aws_defaults):
    doc, _ = aws_defaults
    assert failing_rules(doc) == []


def test_aws_serving_overrides(manifest_path):
    def build(stack):
        vpc = aws.vpc.Vpc(stack, "Vpc", cidr_block="10.9.0.0/16")
        subnets = [aws.subnet.Subnet(stack, f"Subnet{i}", vpc_id=vpc.id, cidr_block=f"10.9.{i}.0/24") for i in range(2)]
        groups = [aws.security_group.SecurityGroup(stack, f"Group{i}", vpc_id=vpc.id) for i in range(2)]
        cert = aws.acm_certificate.AcmCertificate(stack, "Cert", domain_name="models.example.com", validation_method="DNS")
        artifacts = lepton_aws.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        nodes = lepton_aws.GpuNodeGroup(stack, "GpuNodes", model=artifacts, image="ami-0123456789abcdef0", subnets=subnets,
                                        security_groups=groups, health_check_grace_period_sec=600)
        serving = lepton_aws.ModelServing(
            stack, "Serving", node_group=nodes, allowed_cidrs=["10.0.0.0/8", "192.168.0.0/16"], certificate=cert, serving_port=8080,
            health_check_path="/ready", health_check_interval_sec=30, healthy_threshold_count=3, unhealthy_threshold_count=5,
            deregistration_delay_sec=0, idle_timeout_sec=300, deletion_protection=True)
        TerraformOutput(stack, "url", value=serving.endpoint_url)

    doc, _ = aws_synth(build)
    listener = only(doc, "aws_lb_listener")
    assert (listener["port"], listener["protocol"]) == (443, "HTTPS")
    assert listener["ssl_policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06" and listener["certificate_arn"] == ref("aws_acm_certificate", "Cert", "arn")
    assert outputs(doc)["url"] == f"https://{ref('aws_lb', LB, 'dns_name')}"
    lb = only(doc, "aws_lb")
    assert lb["enable_deletion_protection"] is True and lb["idle_timeout"] == 300
    assert lb["subnets"] == [ref("aws_subnet", "Subnet0", "id"), ref("aws_subnet", "Subnet1", "id")]
    tg = only(doc, "aws_lb_target_group")
    assert tg["port"] == 8080 and tg["deregistration_delay"] == "0" and tg["vpc_id"] == ref("aws_subnet", "Subnet0", "vpc_id")
    assert (tg["health_check"]["path"], tg["health_check"]["interval"], tg["health_check"]["healthy_threshold"],
            tg["health_check"]["unhealthy_threshold"]) == ("/ready", 30, 3, 5)
    ingress = resources(doc, "aws_vpc_security_group_ingress_rule")
    assert sorted(r["cidr_ipv4"] for r in ingress.values() if "cidr_ipv4" in r) == ["10.0.0.0/8", "192.168.0.0/16"]
    assert all(r["from_port"] == 443 for r in ingress.values() if "cidr_ipv4" in r)
    # Each of the nodes' own groups admits the load balancer on the serving port.
    node_rules = sorted(r["security_group_id"] for r in ingress.values() if "referenced_security_group_id" in r)
    assert node_rules == [ref("aws_security_group", "Group0", "id"), ref("aws_security_group", "Group1", "id")]
    assert only(doc, "aws_autoscaling_group")["health_check_grace_period"] == 600
    assert "aws_vpc" not in doc.get("data", {}), "allowed_cidrs given: the VPC's range is not looked up"


def test_aws_serving_in_own_subnets_allows_the_vpc_range_read_from_a_data_source(manifest_path):
    def build(stack):
        vpc = aws.vpc.Vpc(stack, "Vpc", cidr_block="10.9.0.0/16")
        subnets = [aws.subnet.Subnet(stack, f"Subnet{i}", vpc_id=vpc.id, cidr_block=f"10.9.{i}.0/24") for i in range(2)]
        artifacts = lepton_aws.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        nodes = lepton_aws.GpuNodeGroup(stack, "GpuNodes", model=artifacts, image="ami-0123456789abcdef0", subnets=subnets)
        lepton_aws.ModelServing(stack, "Serving", node_group=nodes)

    doc, _ = aws_synth(build)
    vpc_data = at(doc, "aws_vpc", "GpuNodes/Vpc", section="data")
    assert vpc_data["id"] == ref("aws_subnet", "Subnet0", "vpc_id")
    callers = at(doc, "aws_vpc_security_group_ingress_rule", "Serving/SecurityGroupIngress-0")
    assert callers["cidr_ipv4"] == "${data.aws_vpc.GpuNodes_Vpc_16B375CF.cidr_block}"


def test_aws_serving_validation_reports_every_problem_once(manifest_path):
    def build(stack):
        artifacts = lepton_aws.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        nodes = lepton_aws.GpuNodeGroup(stack, "GpuNodes", model=artifacts)
        lepton_aws.ModelServing(stack, "Serving", node_group=nodes, allowed_cidrs=["10.0.0.0/33"], serving_port=0, health_check_path="ready",
                                health_check_interval_sec=1, healthy_threshold_count=1, unhealthy_threshold_count=11,
                                deregistration_delay_sec=-1, idle_timeout_sec=0, internet_facing=True)

    with pytest.raises(ConstructValidationError) as err:
        aws_synth(build)
    message = str(err.value)
    assert "test/Serving" in message
    for expected in ("allowed_cidrs contains '10.0.0.0/33'", "serving_port=0", "health_check_path='ready' must start with '/'",
                     "health_check_interval_sec=1", "healthy_threshold_count=1", "unhealthy_threshold_count=11", "deregistration_delay_sec=-1",
                     "idle_timeout_sec=0", "internet_facing=True needs subnets", "internet_facing=True needs certificate"):
        assert expected in message
    assert len(err.value.problems) == 10


@pytest.mark.parametrize("kwargs, fix", [
    ({"allowed_cidrs": []}, "admits nobody"),
    ({"subnets": "one"}, "at least two availability zones"),
])
def test_aws_serving_validation_cases(manifest_path, kwargs, fix):
    def build(stack):
        vpc = aws.vpc.Vpc(stack, "Vpc", cidr_block="10.9.0.0/16")
        artifacts = lepton_aws.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        nodes = lepton_aws.GpuNodeGroup(stack, "GpuNodes", model=artifacts)
        if kwargs.get("subnets") == "one":
            kwargs["subnets"] = [aws.subnet.Subnet(stack, "Subnet", vpc_id=vpc.id, cidr_block="10.9.0.0/24")]
        lepton_aws.ModelServing(stack, "Serving", node_group=nodes, **kwargs)

    with pytest.raises(ConstructValidationError, match=fix):
        aws_synth(build)


# -- AWS: ManagedModelServing (SageMaker) ---------------------------------------------------------------------------


def test_sagemaker_model_reads_the_version_prefix_into_triton_with_network_isolation(aws_defaults):
    doc, _ = aws_defaults
    model = only(doc, "aws_sagemaker_model")
    container = model["primary_container"]
    assert container["model_data_source"] == {"s3_data_source": [{
        "s3_uri": "s3://${aws_s3_bucket.ModelBucket_B33D855B.bucket}/models/credit-risk/1.0.0/", "s3_data_type": "S3Prefix",
        "compression_type": "None"}]}
    assert container["image"] == "${data.aws_sagemaker_prebuilt_ecr_image.Managed_Image_27D82E8E.registry_path}"
    assert container["environment"] == {"SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "credit-risk"}
    image = only(doc, "aws_sagemaker_prebuilt_ecr_image", section="data")
    assert (image["repository_name"], image["image_tag"]) == ("sagemaker-tritonserver", "24.09-py3")
    assert model["enable_network_isolation"] is True and "vpc_config" not in model
    assert model["lifecycle"] == {"create_before_destroy": True}
    assert model["depends_on"] == ["aws_iam_role_policy.Managed_Role_Policy_02397B0B"]


def test_sagemaker_endpoint_config_has_a_name_prefix_and_is_replaced_before_destroy(aws_defaults):
    doc, _ = aws_defaults
    config = only(doc, "aws_sagemaker_endpoint_configuration")
    assert config["name_prefix"] == "lepton-" and config["lifecycle"] == {"create_before_destroy": True}
    assert config["production_variants"] == [{"variant_name": "primary", "model_name": ref("aws_sagemaker_model", "Managed_Model_6290516B", "name"),
                                              "initial_instance_count": 1, "instance_type": "ml.g5.xlarge"}]
    assert "kms_key_arn" not in config, "ml.g5 has NVMe instance storage: SageMaker refuses a volume key"
    endpoint = only(doc, "aws_sagemaker_endpoint")
    assert endpoint["endpoint_config_name"] == ref("aws_sagemaker_endpoint_configuration", "Managed_EndpointConfig_848720FD", "name")
    assert outputs(doc)["sagemaker_endpoint_url"] == (
        "https://runtime.sagemaker.${data.aws_region.Managed_Region_2285AF51.name}.amazonaws.com/endpoints/"
        "${aws_sagemaker_endpoint.Managed_658ACE2E.name}/invocations")


def test_sagemaker_role_is_limited_to_the_model_prefix_and_its_logs(aws_defaults):
    doc, _ = aws_defaults
    role = at(doc, "aws_iam_role", "Managed/Role/Resource")
    assert json.loads(role["assume_role_policy"])["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    statements = json.loads(at(doc, "aws_iam_role_policy", "Managed/Role/Policy")["policy"])["Statement"]
    bucket_arn = ref("aws_s3_bucket", "ModelBucket_B33D855B", "arn")
    assert statements[0] == {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{bucket_arn}/models/credit-risk/1.0.0/*"}
    assert statements[1]["Action"] == "kms:Decrypt" and statements[1]["Resource"] == ref("aws_kms_key", BUCKET_KEY, "arn")
    assert statements[2] == {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
                             "Condition": {"StringLike": {"s3:prefix": ["models/credit-risk/1.0.0/*"]}}}
    assert statements[3]["Resource"] == (
        "arn:${data.aws_partition.Managed_Partition_B822CF24.partition}:logs:${data.aws_region.Managed_Region_2285AF51.name}:"
        "${data.aws_caller_identity.Managed_Account_199DBC9E.account_id}:log-group:/aws/sagemaker/Endpoints/*")
    assert len(statements) == 4


def test_sagemaker_overrides_key_for_ebs_instances_own_image_vpc_and_grant_invoke(manifest_path):
    def build(stack):
        bucket = lepton_aws.ModelBucket(stack, "ModelBucket")
        artifacts = bucket.upload_artifacts(manifest_path)
        volume_key = lepton_aws.ModelBucket(stack, "Other", access_logging=False)
        vpc = aws.vpc.Vpc(stack, "Vpc", cidr_block="10.9.0.0/16")
        subnet = aws.subnet.Subnet(stack, "Subnet", vpc_id=vpc.id, cidr_block="10.9.0.0/24")
        group = aws.security_group.SecurityGroup(stack, "Group", vpc_id=vpc.id)
        managed = lepton_aws.ManagedModelServing(
            stack, "Managed", model=artifacts, instance_type="ml.m5.xlarge", instance_count=2, volume_key=volume_key,
            image_uri="111122223333.dkr.ecr.eu-west-1.amazonaws.com/acme/triton:1.2", environment={"LOG_LEVEL": "debug"},
            network_isolation=False, variant_name="blue", subnets=[subnet], security_groups=[group])
        caller = lepton_aws.ServiceRole(stack, "Caller", service="lambda.amazonaws.com")
        return managed.grant_invoke(caller)

    doc, grant = aws_synth(build)
    config = only(doc, "aws_sagemaker_endpoint_configuration")
    assert config["kms_key_arn"] == ref("aws_kms_key", "Other_Key_0548F91B", "arn")
    (variant,) = config["production_variants"]
    assert (variant["variant_name"], variant["instance_type"], variant["initial_instance_count"]) == ("blue", "ml.m5.xlarge", 2)
    model = only(doc, "aws_sagemaker_model")
    assert model["primary_container"]["image"] == "111122223333.dkr.ecr.eu-west-1.amazonaws.com/acme/triton:1.2"
    assert model["primary_container"]["environment"] == {"LOG_LEVEL": "debug"}, "no Triton default model name for your own image"
    assert model["enable_network_isolation"] is False
    assert model["vpc_config"] == {"subnets": [ref("aws_subnet", "Subnet", "id")], "security_group_ids": [ref("aws_security_group", "Group", "id")]}
    assert "aws_sagemaker_prebuilt_ecr_image" not in doc["data"]
    statements = json.loads(at(doc, "aws_iam_role_policy", "Managed/Role/Policy")["policy"])["Statement"]
    pulls = [s for s in statements if str(s["Action"]).startswith("ecr:") or "ecr:BatchGetImage" in s["Action"]]
    assert pulls[0]["Resource"] == "arn:${data.aws_partition.Managed_Partition_B822CF24.partition}:ecr:eu-west-1:111122223333:repository/acme/triton"
    assert pulls[1] == {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}
    invoke = json.loads(at(doc, "aws_iam_role_policy", "Caller/Policy")["policy"])["Statement"]
    assert invoke == [{"Effect": "Allow", "Action": "sagemaker:InvokeEndpoint", "Resource": ref("aws_sagemaker_endpoint", "Managed_658ACE2E", "arn")}]
    assert grant.actions == ("sagemaker:InvokeEndpoint",) and grant.grantee == "test/Caller"
    assert failing_rules(doc) == []


def test_sagemaker_kms_rule_fails_an_ebs_instance_type_without_a_key():
    """LEP-SM-1 must still catch what the construct prevents: an EBS-backed endpoint config without a key."""
    doc = {"resource": {"aws_sagemaker_endpoint_configuration": {"c": {
        "production_variants": [{"instance_type": "ml.m5.xlarge", "variant_name": "primary"}]}}}}
    assert failing_rules(doc) == [("LEP-SM-1", "aws_sagemaker_endpoint_configuration.c")]


def test_sagemaker_validation_reports_every_problem_once(manifest_path):
    def build(stack):
        artifacts = lepton_aws.ModelBucket.from_bucket_name(stack, "Existing", "acme-models").upload_artifacts(manifest_path)
        vpc = aws.vpc.Vpc(stack, "Vpc", cidr_block="10.9.0.0/16")
        subnet = aws.subnet.Subnet(stack, "Subnet", vpc_id=vpc.id, cidr_block="10.9.0.0/24")
        lepton_aws.ManagedModelServing(stack, "Managed", model=artifacts, instance_type="ml.m5.xlarge", instance_count=0,
                                       image_uri="not an image", variant_name="blue green", subnets=[subnet])

    with pytest.raises(ConstructValidationError) as err:
        aws_synth(build)
    message = str(err.value)
    assert "instance_count=0 must be between 1 and 100" in message
    assert "image_uri='not an image'" in message
    assert "variant_name='blue green'" in message
    assert "subnets and security_groups go together" in message
    assert "has EBS volumes and the model bucket has no known KMS key; pass volume_key=" in message
    assert len(err.value.problems) == 5
    with pytest.raises(ConstructValidationError, match="is not a SageMaker instance type"):
        aws_synth(lambda s: lepton_aws.ManagedModelServing(
            s, "Managed", model=lepton_aws.ModelBucket(s, "B").upload_artifacts(manifest_path), instance_type="g5.xlarge"))


# -- AWS: GpuNodeGroup extras ---------------------------------------------------------------------------------------


def test_aws_nodes_are_on_demand_by_default_and_collect_group_metrics(aws_defaults):
    doc, (nodes, _, _) = aws_defaults
    assert "instance_market_options" not in only(doc, "aws_launch_template")
    asg = only(doc, "aws_autoscaling_group")
    assert asg["metrics_granularity"] == "1Minute"
    assert {"GroupInServiceInstances", "GroupDesiredCapacity"} <= set(asg["enabled_metrics"])


def test_aws_spot_nodes_and_validation(manifest_path):
    def build(stack):
        artifacts = lepton_aws.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        return lepton_aws.GpuNodeGroup(stack, "GpuNodes", model=artifacts, spot=True, instance_type="g5.12xlarge")

    doc, nodes = aws_synth(build)
    lt = only(doc, "aws_launch_template")
    assert lt["instance_market_options"] == {"market_type": "spot", "spot_options": {
        "spot_instance_type": "one-time", "instance_interruption_behavior": "terminate"}}
    assert lt["instance_type"] == "g5.12xlarge"
    assert only(doc, "aws_autoscaling_group")["health_check_type"] == "EC2", "no load balancer: EC2 status checks"
    assert nodes.spot is True
    with pytest.raises(ConstructValidationError, match="spot='yes' is not a bool"):
        aws_synth(lambda s: lepton_aws.GpuNodeGroup(s, "GpuNodes", model=lepton_aws.ModelBucket(s, "B").upload_artifacts(manifest_path), spot="yes"))


def test_aws_serving_logical_ids_are_pinned(aws_defaults):
    """Construct ids are public API: a changed id here replaces a real resource."""
    doc, _ = aws_defaults
    ids = logical_ids(doc)
    assert {i for i in ids if i.split(".")[1].startswith(("Serving", "Managed"))} == {
        "aws_security_group.Serving_SecurityGroup_DD10E716",
        "aws_vpc_security_group_ingress_rule.Serving_SecurityGroupIngress-0_3329A155",
        "aws_vpc_security_group_egress_rule.Serving_SecurityGroupEgress-0_C1029013",
        "aws_vpc_security_group_ingress_rule.Serving_NodeIngress-0_AFA789EC",
        "aws_lb.Serving_7A42E1DA",
        "aws_lb_target_group.Serving_TargetGroup_A228DBF3",
        "aws_lb_listener.Serving_Listener_33284F8F",
        "aws_iam_role.Managed_Role_BC2A80E6",
        "aws_iam_role_policy.Managed_Role_Policy_02397B0B",
        "aws_sagemaker_model.Managed_Model_6290516B",
        "aws_sagemaker_endpoint_configuration.Managed_EndpointConfig_848720FD",
        "aws_sagemaker_endpoint.Managed_658ACE2E",
    }
    # The node group's own ids are unchanged by serving (test_constructs_aws pins them all).
    assert {"aws_autoscaling_group.GpuNodes_319A5FAE", "aws_launch_template.GpuNodes_LaunchTemplate_0E1B1CE7",
            "aws_security_group.GpuNodes_SecurityGroup_3EE7FF91"} <= ids


# -- GCP: ModelServing (internal regional ALB) ----------------------------------------------------------------------


def test_gcp_serving_is_an_internal_managed_load_balancer_in_the_nodes_network(gcp_defaults):
    doc, (nodes, serving) = gcp_defaults
    rule = only(doc, "google_compute_forwarding_rule")
    assert rule["load_balancing_scheme"] == "INTERNAL_MANAGED" and rule["allow_global_access"] is False
    assert (rule["port_range"], rule["ip_protocol"]) == ("80", "TCP")
    assert rule["network"] == ref("google_compute_network", "GpuNodes_Network_1D4C1C9A", "id")
    assert rule["subnetwork"] == ref("google_compute_subnetwork", "GpuNodes_Network_Subnet_B64A22AC", "id")
    assert rule["target"] == ref("google_compute_region_target_http_proxy", "Serving_Proxy_998B823D", "id")
    assert rule["depends_on"] == ["google_compute_subnetwork.Serving_ProxySubnet_D7B543B8"]
    assert "load_balancing_scheme" not in only(doc, "google_compute_region_url_map")
    backend = only(doc, "google_compute_region_backend_service")
    assert (backend["load_balancing_scheme"], backend["protocol"], backend["port_name"], backend["timeout_sec"]) == (
        "INTERNAL_MANAGED", "HTTP", "http", 60)
    assert backend["backend"] == [{"group": ref("google_compute_region_instance_group_manager", "GpuNodes_319A5FAE", "instance_group"),
                                   "balancing_mode": "UTILIZATION", "capacity_scaler": 1}]
    assert backend["health_checks"] == [ref("google_compute_region_health_check", "GpuNodes_HealthCheck_94E7E2F1", "id")]
    assert backend["log_config"] == {"enable": True, "sample_rate": 1}
    assert outputs(doc)["serving_endpoint_url"] == f"http://{ref('google_compute_forwarding_rule', 'Serving_7A42E1DA', 'ip_address')}"
    assert isinstance(serving, IModelServing) and isinstance(nodes, IGpuNodeGroup)


def test_gcp_proxies_and_health_checkers_alone_reach_the_nodes_serving_port(gcp_defaults):
    doc, (nodes, _) = gcp_defaults
    subnet = at(doc, "google_compute_subnetwork", "Serving/ProxySubnet")
    assert (subnet["purpose"], subnet["role"], subnet["ip_cidr_range"]) == ("REGIONAL_MANAGED_PROXY", "ACTIVE", "10.42.16.0/23")
    proxies = at(doc, "google_compute_firewall", "Serving/ProxyFirewall")
    checkers = at(doc, "google_compute_firewall", "GpuNodes/HealthCheckFirewall")
    assert proxies["source_ranges"] == ["10.42.16.0/23"]
    assert checkers["source_ranges"] == ["35.191.0.0/16", "130.211.0.0/22"]
    for rule in (proxies, checkers):
        assert rule["direction"] == "INGRESS" and rule["target_tags"] == [nodes.network_tag]
        assert rule["allow"] == [{"protocol": "tcp", "ports": ["8000"]}]
    assert only(doc, "google_compute_instance_template")["tags"] == [nodes.network_tag]
    assert failing_rules(doc) == []


def test_gcp_nodes_behind_the_load_balancer_auto_heal_on_the_readiness_check(gcp_defaults):
    doc, _ = gcp_defaults
    check = only(doc, "google_compute_region_health_check")
    assert check["http_health_check"] == {"port": 8000, "request_path": "/v2/health/ready"}
    assert (check["check_interval_sec"], check["timeout_sec"], check["healthy_threshold"], check["unhealthy_threshold"]) == (10, 5, 2, 3)
    group = only(doc, "google_compute_region_instance_group_manager")
    assert group["auto_healing_policies"] == {"health_check": ref("google_compute_region_health_check", "GpuNodes_HealthCheck_94E7E2F1", "id"),
                                              "initial_delay_sec": 900}
    assert group["named_port"] == [{"name": "http", "port": 8000}]


def test_gcp_serving_overrides_https_and_an_existing_proxy_subnet(manifest_path):
    def build(stack):
        network = google.compute_network.ComputeNetwork(stack, "Net", name="acme", auto_create_subnetworks=False)
        subnetwork = google.compute_subnetwork.ComputeSubnetwork(stack, "Sub", name="acme", network=network.id, ip_cidr_range="10.8.0.0/20")
        cert = google.compute_region_ssl_certificate.ComputeRegionSslCertificate(stack, "Cert", name="acme", certificate="x", private_key="y")
        artifacts = lepton_gcp.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        nodes = lepton_gcp.GpuNodeGroup(stack, "GpuNodes", model=artifacts, subnetwork=subnetwork, health_check_grace_period_sec=600)
        serving = lepton_gcp.ModelServing(stack, "Serving", node_group=nodes, certificate=cert, proxy_subnet_cidr=None, serving_port=8080,
                                          health_check_path="/ready", timeout_sec=120, log_sample_rate=0.25)
        TerraformOutput(stack, "url", value=serving.endpoint_url)

    doc, _ = gcp_synth(build)
    assert [n for n in resources(doc, "google_compute_subnetwork")] == ["Sub"], "proxy_subnet_cidr=None creates no proxy subnet"
    assert list(resources(doc, "google_compute_firewall")) == ["GpuNodes_HealthCheckFirewall_A341B375"]
    assert at(doc, "google_compute_firewall", "GpuNodes/HealthCheckFirewall")["network"] == ref("google_compute_subnetwork", "Sub", "network")
    proxy = only(doc, "google_compute_region_target_https_proxy")
    assert proxy["ssl_certificates"] == [ref("google_compute_region_ssl_certificate", "Cert", "id")]
    rule = only(doc, "google_compute_forwarding_rule")
    assert rule["port_range"] == "443" and "depends_on" not in rule
    assert outputs(doc)["url"] == f"https://{ref('google_compute_forwarding_rule', 'Serving_7A42E1DA', 'ip_address')}"
    assert only(doc, "google_compute_region_health_check")["http_health_check"] == {"port": 8080, "request_path": "/ready"}
    backend = only(doc, "google_compute_region_backend_service")
    assert backend["timeout_sec"] == 120 and backend["log_config"]["sample_rate"] == 0.25
    group = only(doc, "google_compute_region_instance_group_manager")
    assert group["auto_healing_policies"]["initial_delay_sec"] == 600 and group["named_port"] == [{"name": "http", "port": 8080}]


def test_gcp_serving_validation_reports_every_problem_once(manifest_path):
    def build(stack):
        artifacts = lepton_gcp.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        nodes = lepton_gcp.GpuNodeGroup(stack, "GpuNodes", model=artifacts)
        lepton_gcp.ModelServing(stack, "Serving", node_group=nodes, proxy_subnet_cidr="10.42.16.0/28", serving_port=70000,
                                health_check_path="ready", timeout_sec=0, log_sample_rate=2)

    with pytest.raises(ConstructValidationError) as err:
        gcp_synth(build)
    message = str(err.value)
    for expected in ("proxy_subnet_cidr='10.42.16.0/28'", "serving_port=70000", "health_check_path='ready'", "timeout_sec=0", "log_sample_rate=2"):
        assert expected in message
    assert len(err.value.problems) == 5


# -- GCP: GpuNodeGroup extras ---------------------------------------------------------------------------------------


def test_gcp_nodes_alone_are_standard_vms_without_auto_healing(manifest_path):
    doc, nodes = gcp_synth(lambda s: lepton_gcp.GpuNodeGroup(s, "GpuNodes", model=lepton_gcp.ModelBucket(s, "B").upload_artifacts(manifest_path)))
    template = only(doc, "google_compute_instance_template")
    assert template["scheduling"] == {"on_host_maintenance": "TERMINATE", "automatic_restart": True, "preemptible": False,
                                      "provisioning_model": "STANDARD"}
    assert "tags" not in template
    group = only(doc, "google_compute_region_instance_group_manager")
    assert "auto_healing_policies" not in group and "named_port" not in group
    assert resources(doc, "google_compute_region_health_check") == {} and resources(doc, "google_compute_firewall") == {}


def test_gcp_spot_nodes_with_auto_healing_and_validation(manifest_path):
    def build(stack):
        artifacts = lepton_gcp.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        nodes = lepton_gcp.GpuNodeGroup(stack, "GpuNodes", model=artifacts, spot=True, auto_healing=True, instance_type="n1-standard-8",
                                        accelerator_count=2, disk_size_gib=200)
        assert nodes.enable_auto_healing() is nodes.health_check, "a second call returns the same health check"
        return nodes

    doc, nodes = gcp_synth(build)
    template = only(doc, "google_compute_instance_template")
    assert template["scheduling"] == {"on_host_maintenance": "TERMINATE", "automatic_restart": False, "preemptible": True,
                                      "provisioning_model": "SPOT", "instance_termination_action": "STOP"}
    assert template["guest_accelerator"] == [{"type": "nvidia-tesla-t4", "count": 2}]
    assert template["disk"][0]["disk_size_gb"] == 200
    assert only(doc, "google_compute_region_instance_group_manager")["auto_healing_policies"]["initial_delay_sec"] == 900
    assert len(resources(doc, "google_compute_region_health_check")) == 1
    with pytest.raises(ConstructValidationError) as err:
        gcp_synth(lambda s: lepton_gcp.GpuNodeGroup(s, "GpuNodes", model=lepton_gcp.ModelBucket(s, "B").upload_artifacts(manifest_path),
                                                    spot=1, health_check_grace_period_sec=4000))
    assert "spot=1 is not a bool" in str(err.value) and "health_check_grace_period_sec=4000" in str(err.value)
    assert len(err.value.problems) == 2


def test_gcp_serving_logical_ids_are_pinned(gcp_defaults):
    doc, _ = gcp_defaults
    ids = logical_ids(doc)
    assert {i for i in ids if i.split(".")[1].startswith("Serving") or "HealthCheck" in i} == {
        "google_compute_subnetwork.Serving_ProxySubnet_D7B543B8",
        "google_compute_firewall.Serving_ProxyFirewall_F9DEFAF8",
        "google_compute_region_backend_service.Serving_BackendService_F351F141",
        "google_compute_region_url_map.Serving_UrlMap_7E1CC81D",
        "google_compute_region_target_http_proxy.Serving_Proxy_998B823D",
        "google_compute_forwarding_rule.Serving_7A42E1DA",
        "google_compute_region_health_check.GpuNodes_HealthCheck_94E7E2F1",
        "google_compute_firewall.GpuNodes_HealthCheckFirewall_A341B375",
    }
    assert "google_compute_region_instance_group_manager.GpuNodes_319A5FAE" in ids
