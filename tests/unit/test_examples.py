"""The examples: each is a cdktf app of its own with a README, synthesizes in-process the way ``cdktf synth`` runs
it, and builds what its README says; the construct-only ones are exactly what ``lepton init`` writes.

The checkov baseline test (tests/integration/test_reference_stacks.py) scans examples/existing-bucket;
tests/integration/test_examples_apply.py applies the AWS ones to moto.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lepton_cdk.checks import PolicyChecks
from lepton_cdk.testing import AWS_SERVICES, MOTO_IMAGE, resources, synthesized_stacks, write_test_manifest
from tests.support.manifests import write_fake_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
EXAMPLE = EXAMPLES / "existing-bucket"
TEMPLATES = REPO_ROOT / "lepton_cdk" / "scaffold" / "templates"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-0b0a-0908-0706-050403020100"
APPS = sorted(p.parent.name for p in EXAMPLES.glob("*/main.py"))


def load_example(name: str = "existing-bucket") -> ModuleType:
    """examples/NAME/main.py as a module (the folder names are not package names)."""
    spec = importlib.util.spec_from_file_location(f"example_{name.replace('-', '_')}", EXAMPLES / name / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("example")
    manifest = write_fake_manifest(root / "model")
    app = load_example().build_app(root / "cdktf.out", {"EXAMPLE_MANIFEST": str(manifest), "EXAMPLE_BUCKET": "acme-models",
                                                        "EXAMPLE_KMS_KEY_ARN": KEY_ARN, "EXAMPLE_ALERT_EMAIL": "oncall@acme.io"})
    findings = PolicyChecks.synth(app)
    assert [f for f in findings if not f.suppressed] == [], findings
    out = root / "cdktf.out"
    return json.loads((out / "stacks" / "existing-bucket" / "cdk.tf.json").read_text()), out


def test_example_uses_the_existing_bucket_and_builds_the_target_around_it(synthesized):
    doc, out = synthesized
    resources = doc["resource"]
    assert "aws_s3_bucket" not in resources, "the existing bucket must not be declared"
    objects = list(resources["aws_s3_object"].values())
    assert {o["bucket"] for o in objects} == {"acme-models"} and all(o["kms_key_id"] == KEY_ARN for o in objects)
    assert all(o["key"].startswith("models/credit-risk/1.0.0/") for o in objects)
    # the nodes may read this model version (and decrypt with the bucket's key via S3), nothing else
    (policy,) = [p for name, p in resources["aws_iam_role_policy"].items() if name.startswith("Target_GpuNodes_")]
    statements = json.loads(policy["policy"])["Statement"]
    assert {s["Action"] if isinstance(s["Action"], str) else tuple(s["Action"]) for s in statements} == {"s3:GetObject", "kms:Decrypt"}
    assert {s["Resource"] for s in statements} == {
        "arn:${data.aws_partition.ExistingModels_Partition_94276E89.partition}:s3:::acme-models/models/credit-risk/1.0.0/*", KEY_ARN}
    (lb,) = resources["aws_lb"].values()
    assert lb["internal"] is True
    assert "aws_autoscaling_group" in resources and "aws_sns_topic" in resources
    (subscription,) = resources["aws_sns_topic_subscription"].values()
    assert subscription["endpoint"] == "oncall@acme.io"
    assert {"model_uri", "node_group_name", "serving_endpoint_url", "serving_load_balancer_dns_name", "alarm_topic_arn"} == set(doc["output"])
    assert doc["output"]["model_uri"]["value"] == "s3://acme-models/models/credit-risk/1.0.0/model.onnx"
    assert (out / "lepton-policy-report.json").is_file(), "the policy report did not land in cdktf.out"


def test_the_examples_are_the_apps_the_index_lists():
    assert {"aws-constructs", "gcp-constructs", "existing-bucket"} <= set(APPS)
    index = (EXAMPLES / "README.md").read_text()
    assert [name for name in APPS if f"[`{name}/`]({name}/README.md)" not in index] == []


@pytest.mark.parametrize("name", APPS)
def test_each_example_is_a_cdktf_app_with_a_readme(name):
    config = json.loads((EXAMPLES / name / "cdktf.json").read_text())
    assert config["language"] == "python" and config["app"].endswith("python main.py") and config["output"] == "cdktf.out"
    readme = (EXAMPLES / name / "README.md").read_text()
    assert readme.startswith("# Example: ") and "## Run it" in readme


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_the_construct_examples_are_what_lepton_init_writes(cloud):
    for name in ("main.py", "test_main.py"):
        example, template = EXAMPLES / f"{cloud}-constructs" / name, TEMPLATES / cloud / f"{name}.tmpl"
        assert example.read_bytes() == template.read_bytes(), (
            f"examples/{cloud}-constructs/{name} and the `lepton init --cloud {cloud}` template differ: change both the same way")


@pytest.fixture(scope="module", params=["aws", "gcp"])
def constructs_example(request, tmp_path_factory) -> tuple[str, dict]:
    """(cloud, the Terraform JSON of examples/<cloud>-constructs built for a two-artifact manifest)."""
    root = tmp_path_factory.mktemp(f"{request.param}-constructs")
    manifest = write_test_manifest(root / "model", name="fraud", version="7.1.0")
    app = load_example(f"{request.param}-constructs").build_app(root / "cdktf.out", {"LEPTON_MANIFEST": str(manifest)})
    findings = PolicyChecks.synth(app)
    assert [f for f in findings if not f.suppressed] == [], findings
    assert [f for f in findings if f.suppressed] == [], "the cloud profile suppresses nothing"
    return request.param, synthesized_stacks(root / "cdktf.out")["models"]


def test_the_construct_examples_build_a_bucket_with_the_artifacts_and_gpu_nodes_and_no_pattern(constructs_example):
    cloud, doc = constructs_example
    bucket, obj, group, lb = {
        "aws": ("aws_s3_bucket", "aws_s3_object", "aws_autoscaling_group", "aws_lb"),
        "gcp": ("google_storage_bucket", "google_storage_bucket_object", "google_compute_region_instance_group_manager",
                "google_compute_forwarding_rule"),
    }[cloud]
    assert len(resources(doc, bucket)) == 2, "the model bucket and its access-log bucket"
    keys = sorted(o.get("key", o.get("name")) for o in resources(doc, obj).values())
    assert keys == ["models/fraud/7.1.0/model.onnx", "models/fraud/7.1.0/preprocessing.json"]
    assert len(resources(doc, group)) == 1
    assert resources(doc, lb) == {}, "construct-only: no load balancer (that is the pattern's)"
    scheme = "s3" if cloud == "aws" else "gs"
    assert doc["output"]["model_uri"]["value"].startswith(f"{scheme}://") and set(doc["output"]) == {"bucket_name", "model_uri", "node_group_name"}


def test_the_construct_examples_nodes_may_read_only_their_model_version(constructs_example):
    cloud, doc = constructs_example
    if cloud == "aws":
        (policy,) = resources(doc, "aws_iam_role_policy").values()
        reads = [s["Resource"] for s in json.loads(policy["policy"])["Statement"] if s["Action"] == "s3:GetObject"]
        assert len(reads) == 1 and reads[0].endswith("/models/fraud/7.1.0/*")
    else:
        (grant,) = resources(doc, "google_storage_bucket_iam_member", {"role": "roles/storage.objectViewer"}).values()
        assert grant["condition"]["expression"].endswith('/objects/models/fraud/7.1.0/")')


def test_the_existing_bucket_examples_local_profile_targets_moto_and_keeps_nothing(tmp_path):
    manifest = write_test_manifest(tmp_path / "model")
    app = load_example().build_app(tmp_path / "out", {"EXAMPLE_MANIFEST": str(manifest), "LEPTON_PROFILE": "local",
                                                      "LEPTON_AWS_ENDPOINT": "http://127.0.0.1:5055"})
    findings = PolicyChecks.synth(app)
    assert {f.rule for f in findings if f.suppressed} == {"LEP-RETAIN-1"} and not [f for f in findings if not f.suppressed]
    doc = synthesized_stacks(tmp_path / "out")["existing-bucket"]
    (provider,) = doc["provider"]["aws"]
    assert provider["endpoints"] == [dict.fromkeys(AWS_SERVICES, "http://127.0.0.1:5055")]
    (template,) = resources(doc, "aws_launch_template").values()
    assert template["image_id"] == MOTO_IMAGE
    assert "prevent_destroy" not in json.dumps(doc), "the local profile must let destroy clean up"


def test_example_prints_one_error_line_for_a_missing_manifest(tmp_path):
    proc = subprocess.run([sys.executable, "main.py"], cwd=EXAMPLE, capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
                               "CDKTF_OUTDIR": str(tmp_path / "out"), "EXAMPLE_MANIFEST": str(tmp_path / "missing.json")})
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: manifest not found"), proc.stderr
