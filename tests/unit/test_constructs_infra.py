"""The infra app: its typed config, the stacks it builds, its error lines, and the project's import boundaries."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lepton_cdk.app.config import ConfigError, InfraConfig
from lepton_cdk.app.main import build_app
from lepton_cdk.app.stacks.aws import AWS_SERVICES
from lepton_cdk.contract import ContractError
from tests.support.manifests import write_fake_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
QUIET = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CHECKPOINT_DISABLE": "1"}

# Which provider service endpoint each AWS resource type talks to.
SERVICE_OF = {
    "aws_s3_": "s3", "aws_kms_": "kms", "aws_iam_": "iam", "aws_autoscaling_": "autoscaling", "aws_ssm_": "ssm",
    "aws_launch_template": "ec2", "aws_vpc": "ec2", "aws_subnet": "ec2", "aws_route_table": "ec2", "aws_security_group": "ec2",
    "aws_default_security_group": "ec2", "aws_availability_zones": "ec2", "aws_region": "ec2", "aws_vpc_endpoint": "ec2",
    "aws_lb": "elbv2", "aws_cloudwatch_metric_alarm": "cloudwatch", "aws_cloudwatch_event_": "events", "aws_sns_": "sns",
    "aws_sagemaker_": "sagemaker", "aws_caller_identity": "sts", "aws_partition": "sts", "aws_datasync_": "datasync",
    "aws_cloudwatch_log_": "logs", "aws_secretsmanager_": "secretsmanager",
}
AWS_OUTPUTS = {"bucket_name", "bucket_arn", "kms_key_arn", "model_uri", "model_prefix_uri", "model_sha256", "model_name", "model_version",
               "node_group_name", "node_role_arn", "serving_endpoint_url", "serving_load_balancer_dns_name", "alarm_topic_arn"}
GCS_SOURCE_ENV = {"LEPTON_SOURCE_URI": "gs://acme-raw/tables", "LEPTON_SOURCE_HMAC_SECRET": "lepton/gcs-hmac",
                  "LEPTON_DATASYNC_AGENTS": "arn:aws:datasync:us-east-1:123456789012:agent/agent-0123456789abcdef0"}


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    return write_fake_manifest(tmp_path_factory.mktemp("model"))


def synth_config(config: InfraConfig, outdir: Path) -> dict[str, dict]:
    """Synthesize the app for ``config``; returns {stack name: Terraform JSON}."""
    build_app(config, outdir).synth()
    return {p.parent.name: json.loads(p.read_text()) for p in sorted((outdir / "stacks").glob("*/cdk.tf.json"))}


# -- config ------------------------------------------------------------------------------------------------------


def test_config_defaults():
    config = InfraConfig.from_env({})
    assert config.manifest_path == Path("build/demo/manifest.json")
    assert config.targets == ("aws",) and config.stack_name("aws") == "lepton-aws"
    assert config.retain_data is True and config.aws_endpoint is None and config.image_id is None
    assert (config.aws_region, config.gcp_region, config.node_count) == ("us-east-1", "us-central1", 1)
    assert config.state_file("aws") is None


def test_config_reads_every_variable(tmp_path):
    config = InfraConfig.from_env({
        "LEPTON_MANIFEST": "m/manifest.json", "LEPTON_TARGET": "ALL", "LEPTON_STACK_PREFIX": "acme", "LEPTON_RETAIN_DATA": "false",
        "LEPTON_STATE_DIR": str(tmp_path), "LEPTON_AWS_REGION": "eu-west-1", "LEPTON_AWS_ENDPOINT": "http://127.0.0.1:5000/",
        "LEPTON_AWS_INSTANCE_TYPE": "g6.xlarge", "LEPTON_IMAGE_ID": "ami-0123456789abcdef0", "LEPTON_NODE_COUNT": "0",
        "LEPTON_GCP_PROJECT": "acme-ml", "LEPTON_GCP_REGION": "europe-west4", "LEPTON_GCP_MACHINE_TYPE": "n1-standard-8",
    })
    assert config.targets == ("aws", "gcp") and config.stack_name("gcp") == "acme-gcp"
    assert config.retain_data is False and config.aws_endpoint == "http://127.0.0.1:5000"
    assert config.state_file("aws") == str(tmp_path / "terraform.acme-aws.tfstate")
    assert (config.aws_region, config.aws_instance_type, config.image_id, config.node_count) == ("eu-west-1", "g6.xlarge", "ami-0123456789abcdef0", 0)
    assert (config.gcp_project, config.gcp_region, config.gcp_machine_type) == ("acme-ml", "europe-west4", "n1-standard-8")


def test_config_reads_the_target_settings():
    config = InfraConfig.from_env({"LEPTON_SPOT": "yes", "LEPTON_ALERT_EMAILS": "oncall@acme.io, ml@acme.io", "LEPTON_MANAGED_ENDPOINT": "1",
                                   "LEPTON_SAGEMAKER_TYPE": "ml.g4dn.xlarge", "LEPTON_TRANSFER_MODE": "full", **GCS_SOURCE_ENV})
    assert (config.spot, config.alert_emails, config.managed_endpoint) == (True, ("oncall@acme.io", "ml@acme.io"), True)
    assert (config.sagemaker_instance_type, config.transfer_mode) == ("ml.g4dn.xlarge", "full")
    source = config.source
    assert (source.scheme, source.bucket, source.prefix, source.target) == ("gs", "acme-raw", "tables/", "aws")
    assert source.hmac_secret_id == "lepton/gcs-hmac" and len(source.agent_arns) == 1 and source.role_arn is None
    s3 = InfraConfig.from_env({"LEPTON_TARGET": "gcp", "LEPTON_SOURCE_URI": "s3://acme-raw/",
                               "LEPTON_SOURCE_ROLE_ARN": "arn:aws:iam::123456789012:role/lepton-transfer"}).source
    assert (s3.scheme, s3.bucket, s3.prefix, s3.target, s3.role_arn) == ("s3", "acme-raw", "", "gcp", "arn:aws:iam::123456789012:role/lepton-transfer")
    defaults = InfraConfig.from_env({})
    assert (defaults.spot, defaults.alert_emails, defaults.managed_endpoint, defaults.source) == (False, (), False, None)


@pytest.mark.parametrize("env, expected", [
    ({"LEPTON_TARGET": "azure"}, "LEPTON_TARGET='azure' is not valid: use aws, gcp or all"),
    ({"LEPTON_SPOT": "cheap"}, "LEPTON_SPOT='cheap' is not valid: use true or false"),
    ({"LEPTON_ALERT_EMAILS": "oncall@acme.io,nobody"}, "'nobody' is not an e-mail address"),
    ({"LEPTON_SAGEMAKER_TYPE": "g5.xlarge"}, "LEPTON_SAGEMAKER_TYPE='g5.xlarge' is not valid: use a SageMaker instance type"),
    ({"LEPTON_TRANSFER_MODE": "partial"}, "LEPTON_TRANSFER_MODE='partial' is not valid: use full or incremental"),
    ({"LEPTON_SOURCE_URI": "ftp://acme-raw/"}, "LEPTON_SOURCE_URI='ftp://acme-raw/' is not valid: use gs://<bucket>/"),
    ({"LEPTON_SOURCE_URI": "gs://acme-raw/"}, "a gs:// source needs LEPTON_SOURCE_HMAC_SECRET"),
    ({"LEPTON_SOURCE_URI": "gs://acme-raw/", "LEPTON_SOURCE_HMAC_SECRET": "s"}, "a gs:// source needs LEPTON_DATASYNC_AGENTS"),
    ({"LEPTON_SOURCE_URI": "s3://acme-raw/"}, "copied into the gcp stack, which LEPTON_TARGET does not build"),
    ({"LEPTON_TARGET": "gcp", "LEPTON_SOURCE_URI": "s3://acme-raw/"}, "an s3:// source needs LEPTON_SOURCE_ROLE_ARN"),
    ({"LEPTON_TARGET": "gcp", "LEPTON_SOURCE_URI": "s3://acme-raw/", "LEPTON_SOURCE_ROLE_ARN": "admin"}, "LEPTON_SOURCE_ROLE_ARN='admin' is not valid"),
    ({"LEPTON_SOURCE_ROLE_ARN": "arn:aws:iam::123456789012:role/x"}, "it only applies with LEPTON_SOURCE_URI"),
    ({"LEPTON_RETAIN_DATA": "maybe"}, "LEPTON_RETAIN_DATA='maybe' is not valid: use true or false"),
    ({"LEPTON_AWS_REGION": "moon-1"}, "LEPTON_AWS_REGION='moon-1' is not valid"),
    ({"LEPTON_AWS_ENDPOINT": "127.0.0.1:5000"}, "LEPTON_AWS_ENDPOINT='127.0.0.1:5000' is not valid: use the emulator's base URL"),
    ({"LEPTON_IMAGE_ID": "ubuntu"}, "LEPTON_IMAGE_ID='ubuntu' is not valid"),
    ({"LEPTON_NODE_COUNT": "-1"}, "LEPTON_NODE_COUNT='-1' is not valid: use a whole number from 0 to 100"),
    ({"LEPTON_STACK_PREFIX": "Acme"}, "LEPTON_STACK_PREFIX='Acme' is not valid"),
    ({"LEPTON_TARGET": "gcp", "LEPTON_GCP_PROJECT": "x"}, "LEPTON_GCP_PROJECT='x' is not valid"),
    ({"LEPTON_GCP_REGION": "central"}, "LEPTON_GCP_REGION='central' is not valid"),
])
def test_config_errors_are_one_line_naming_variable_value_and_fix(env, expected):
    with pytest.raises(ConfigError) as err:
        InfraConfig.from_env(env)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


# -- stacks --------------------------------------------------------------------------------------------------------


def test_aws_stack_for_real_aws(manifest_path, tmp_path):
    stacks = synth_config(InfraConfig(manifest_path=manifest_path), tmp_path / "out")
    doc = stacks["lepton-aws"]
    (provider,) = doc["provider"]["aws"]
    assert provider == {"region": "us-east-1", "default_tags": [{"tags": {"managed-by": "lepton-cdk", "lepton:stack": "lepton-aws"}}]}
    assert "aws_s3_bucket_policy" in doc["resource"]
    assert doc["resource"]["aws_s3_bucket"]["ModelBucket_B33D855B"]["lifecycle"] == {"prevent_destroy": True}
    assert set(doc["output"]) == AWS_OUTPUTS
    assert doc["output"]["node_group_name"]["value"] == "${aws_autoscaling_group.GpuNodes_319A5FAE.name}"
    # the target is the stack's "Default" child: the logical ids from before MigrationTarget stay, the new children join them
    assert doc["output"]["serving_endpoint_url"]["value"] == "http://${aws_lb.Serving_7A42E1DA.dns_name}"
    assert doc["output"]["alarm_topic_arn"]["value"] == "${aws_sns_topic.Monitoring_Topic_8F26FAED.arn}"
    group = doc["resource"]["aws_autoscaling_group"]["GpuNodes_319A5FAE"]
    assert (group["health_check_type"], group["health_check_grace_period"]) == ("ELB", 900)
    assert "aws_sagemaker_endpoint" not in doc["resource"] and "aws_datasync_task" not in doc["resource"]
    assert "aws_sns_topic_subscription" not in doc["resource"]
    assert doc["output"]["model_uri"]["value"] == "s3://${aws_s3_bucket.ModelBucket_B33D855B.bucket}/models/credit-risk/1.0.0/model.onnx"
    assert all(o["description"] for o in doc["output"].values())
    # the assets the objects upload were staged beside the stack
    for obj in doc["resource"]["aws_s3_object"].values():
        assert (tmp_path / "out" / "stacks" / "lepton-aws" / obj["source"]).is_file()


def test_aws_stack_for_an_emulator_points_every_used_service_there_without_credentials(manifest_path, tmp_path):
    config = InfraConfig(manifest_path=manifest_path, aws_endpoint="http://127.0.0.1:4566", retain_data=False,
                         image_id="ami-0123456789abcdef0", state_dir=tmp_path / "state")
    doc = synth_config(config, tmp_path / "out")["lepton-aws"]
    (provider,) = doc["provider"]["aws"]
    used = {SERVICE_OF[prefix] for section in ("resource", "data") for rtype in doc.get(section, {})
            for prefix in SERVICE_OF if rtype.startswith(prefix)}
    assert used <= set(AWS_SERVICES)
    assert provider["endpoints"] == [dict.fromkeys(AWS_SERVICES, "http://127.0.0.1:4566")]
    assert provider["s3_use_path_style"] is True and provider["max_retries"] == 4
    # skip_requesting_account_id stays off: with it, rules referencing a security group drift on every re-plan
    assert provider["skip_credentials_validation"] is True and "skip_requesting_account_id" not in provider
    assert provider["skip_region_validation"] is True and provider["skip_metadata_api_check"] == "true"
    assert not set(provider) & {"access_key", "secret_key", "token", "profile", "shared_credentials_files", "assume_role"}
    assert "AKIA" not in json.dumps(doc) and "secret" not in json.dumps(doc).lower().replace('"secretsmanager":', "")
    assert doc["terraform"]["backend"] == {"local": {"path": str(tmp_path / "state" / "terraform.lepton-aws.tfstate")}}
    # plain-HTTP emulator: a TLS-only policy would lock it out; the log bucket keeps only the log-delivery grant
    policies = doc["resource"]["aws_s3_bucket_policy"]
    assert list(policies) == ["ModelBucket_AccessLogs_Policy_B48C30E2"]
    assert [st["Effect"] for st in json.loads(policies["ModelBucket_AccessLogs_Policy_B48C30E2"]["policy"])["Statement"]] == ["Allow"]
    assert doc["resource"]["aws_s3_bucket"]["ModelBucket_B33D855B"]["force_destroy"] is True
    assert "data" not in doc or "aws_ssm_parameter" not in doc["data"]


def test_an_https_emulator_keeps_the_tls_only_policy(manifest_path, tmp_path):
    doc = synth_config(InfraConfig(manifest_path=manifest_path, aws_endpoint="https://localhost:4566"), tmp_path / "out")["lepton-aws"]
    assert "aws_s3_bucket_policy" in doc["resource"]


def test_gcp_stack(manifest_path, tmp_path):
    config = InfraConfig(manifest_path=manifest_path, targets=("gcp",), gcp_project="acme-ml", gcp_region="europe-west4", node_count=2)
    doc = synth_config(config, tmp_path / "out")["lepton-gcp"]
    (provider,) = doc["provider"]["google"]
    assert (provider["project"], provider["region"]) == ("acme-ml", "europe-west4")
    assert set(doc["output"]) == {"bucket_name", "bucket_url", "kms_key_id", "model_uri", "model_prefix_uri", "model_sha256",
                                  "model_name", "model_version", "node_group_name", "node_service_account_email",
                                  "serving_endpoint_url", "serving_ip_address"}
    assert "google_compute_forwarding_rule" in doc["resource"]
    assert "google_monitoring_alert_policy" not in doc["resource"], "GCP has no default recipient: no alerts without LEPTON_ALERT_EMAILS"
    assert doc["resource"]["google_compute_region_instance_group_manager"]["GpuNodes_319A5FAE"]["target_size"] == 2
    assert "credentials" not in json.dumps(doc) and "access_token" not in json.dumps(doc)


def test_gcp_stack_without_a_project_leaves_it_to_the_provider(manifest_path, tmp_path):
    """``lepton demo --target gcp`` synthesizes with no cloud account: the project comes from GOOGLE_PROJECT at plan time."""
    doc = synth_config(InfraConfig.from_env({"LEPTON_TARGET": "gcp", "LEPTON_MANIFEST": str(manifest_path)}), tmp_path / "out")["lepton-gcp"]
    (provider,) = doc["provider"]["google"]
    assert "project" not in provider and provider["region"] == "us-central1"
    assert doc["resource"]["google_storage_bucket"]["ModelBucket_B33D855B"]["name"].startswith("${data.google_client_config.")


def test_target_settings_reach_the_stacks(manifest_path, tmp_path):
    """One synth, both clouds: spot nodes, alert e-mails, the SageMaker endpoint, a gs:// source copied into the AWS stack."""
    config = InfraConfig.from_env({"LEPTON_MANIFEST": str(manifest_path), "LEPTON_TARGET": "all", "LEPTON_GCP_PROJECT": "acme-ml",
                                   "LEPTON_SPOT": "true", "LEPTON_ALERT_EMAILS": "oncall@acme.io", "LEPTON_MANAGED_ENDPOINT": "true",
                                   "LEPTON_TRANSFER_MODE": "full", **GCS_SOURCE_ENV})
    stacks = synth_config(config, tmp_path / "out")
    aws_doc, gcp_doc = stacks["lepton-aws"], stacks["lepton-gcp"]
    assert set(aws_doc["output"]) == AWS_OUTPUTS | {"sagemaker_endpoint_name", "sagemaker_endpoint_url", "data_bucket_name", "transfer_id"}
    (template,) = aws_doc["resource"]["aws_launch_template"].values()
    assert template["instance_market_options"]["market_type"] == "spot"
    (subscription,) = aws_doc["resource"]["aws_sns_topic_subscription"].values()
    assert subscription["endpoint"] == "oncall@acme.io"
    (task,) = aws_doc["resource"]["aws_datasync_task"].values()
    assert task["options"]["transfer_mode"] == "ALL"
    (location,) = aws_doc["resource"]["aws_datasync_location_object_storage"].values()
    assert (location["bucket_name"], location["subdirectory"]) == ("acme-raw", "/tables/")
    assert sorted(aws_doc["resource"]["aws_s3_bucket"]) == ["DataBucket_AccessLogs_C7D55B3F", "DataBucket_E3889A50",
                                                            "ModelBucket_AccessLogs_94B93479", "ModelBucket_B33D855B"]
    assert "aws_sagemaker_endpoint" in aws_doc["resource"]
    # a gs:// source feeds only the AWS stack; the GCP stack gets its spot nodes and alert policies
    assert "google_storage_transfer_job" not in gcp_doc["resource"]
    (group,) = gcp_doc["resource"]["google_compute_instance_template"].values()
    assert group["scheduling"]["provisioning_model"] == "SPOT"
    assert len(gcp_doc["resource"]["google_monitoring_alert_policy"]) >= 3


def test_target_all_builds_one_stack_per_cloud(manifest_path, tmp_path):
    stacks = synth_config(InfraConfig(manifest_path=manifest_path, targets=("aws", "gcp"), gcp_project="acme-ml"), tmp_path / "out")
    assert sorted(stacks) == ["lepton-aws", "lepton-gcp"]
    assert "google" not in stacks["lepton-aws"]["provider"] and "aws" not in stacks["lepton-gcp"]["provider"]


def test_build_app_refuses_a_missing_manifest_before_starting_jsii(tmp_path):
    with pytest.raises(ContractError, match="manifest not found"):
        build_app(InfraConfig(manifest_path=tmp_path / "nope.json"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("env, first_words", [
    ({"LEPTON_MANIFEST": "/nonexistent/manifest.json"}, "error: manifest not found at /nonexistent/manifest.json"),
    ({"LEPTON_TARGET": "azure"}, "error: LEPTON_TARGET='azure' is not valid"),
])
def test_python_m_infra_prints_one_error_line_and_exits_1(env, first_words, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "infra"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", **QUIET, "CDKTF_OUTDIR": str(tmp_path / "out"), **env})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(first_words), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "out").exists()


def test_python_m_infra_refuses_a_tampered_artifact_in_one_line(tmp_path):
    manifest_path = write_fake_manifest(tmp_path / "model")
    (tmp_path / "model" / "model.onnx").write_bytes(b"tampered")
    proc = subprocess.run([sys.executable, "-m", "infra"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", **QUIET, "CDKTF_OUTDIR": str(tmp_path / "out"), "LEPTON_MANIFEST": str(manifest_path)})
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: artifact 'model'") and "the manifest records" in line


def test_cdktf_json_runs_the_infra_package():
    config = json.loads((REPO_ROOT / "cdktf.json").read_text())
    assert config["language"] == "python" and config["app"] == ".venv/bin/python -m infra" and config["output"] == "cdktf.out"
    assert config["terraformProviders"] == [] and config["terraformModules"] == []


# -- boundaries ----------------------------------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            package = path.relative_to(REPO_ROOT).parent.parts
            base = package[: len(package) - node.level + 1]
            names.add(".".join(base + ((node.module,) if node.module else ())))
    return names


def _python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((REPO_ROOT / folder).rglob("*.py"))]


def test_only_the_framework_module_imports_cdktf_constructs_and_providers():
    framework = REPO_ROOT / "lepton_cdk" / "core" / "framework.py"
    offenders = {
        str(p.relative_to(REPO_ROOT)): sorted(m for m in _imports(p) if m.split(".")[0] in ("cdktf", "constructs", "jsii") or m.startswith("cdktf_cdktf_provider"))
        for p in _python_files("lepton_cdk", "infra") if p != framework
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_aws_and_gcp_never_import_each_other_and_infra_never_imports_torch():
    for cloud, other in (("aws", "gcp"), ("gcp", "aws")):
        for path in _python_files(f"lepton_cdk/{cloud}"):
            assert not any(m.startswith(f"lepton_cdk.{other}") for m in _imports(path)), path
    for path in _python_files("infra", "lepton_cdk/core", "lepton_cdk/aws", "lepton_cdk/gcp"):
        assert not any(m.split(".")[0] in ("torch", "model_pipeline", "onnxruntime") for m in _imports(path)), path


def test_package_root_core_and_config_import_without_cdktf():
    code = ("import sys, lepton_cdk, lepton_cdk.core, lepton_cdk.core.startup_script, lepton_cdk.core.model_layout, lepton_cdk.app.config, lepton_cdk.app.main; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cdktf', 'jsii', 'constructs', 'torch')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"


def test_provider_packages_load_only_the_submodules_in_use():
    from lepton_cdk import is_lazy_provider
    from lepton_cdk.core.framework import aws, provider_package

    aws.s3_bucket.S3Bucket  # noqa: B018 - touching it is the point
    package = sys.modules["cdktf_cdktf_provider_aws"]
    assert package is provider_package("cdktf_cdktf_provider_aws")
    assert is_lazy_provider(package), "the provider package __init__ ran (all ~2,100 submodules imported)"
    loaded = aws.loaded_submodules()
    assert "s3_bucket" in loaded and len(loaded) < 60
    # code that imports the package itself still reaches any submodule
    import cdktf_cdktf_provider_aws as whole

    assert whole.kms_alias.KmsAlias is aws.kms_alias.KmsAlias
    with pytest.raises(AttributeError):
        aws.no_such_resource  # noqa: B018
