"""examples/existing-bucket synthesizes in-process the way ``cdktf synth`` runs it, and builds what its README says.

The checkov baseline test (tests/integration/test_reference_stacks.py) scans the same stack.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.manifests import write_fake_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "existing-bucket"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-0b0a-0908-0706-050403020100"


def load_example() -> ModuleType:
    """examples/existing-bucket/main.py as a module (its folder name is not a package name)."""
    spec = importlib.util.spec_from_file_location("example_existing_bucket", EXAMPLE / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("example")
    manifest = write_fake_manifest(root / "model")
    app = load_example().build_app(root / "cdktf.out", {"EXAMPLE_MANIFEST": str(manifest), "EXAMPLE_BUCKET": "acme-models",
                                                        "EXAMPLE_KMS_KEY_ARN": KEY_ARN, "EXAMPLE_ALERT_EMAIL": "oncall@acme.io"})
    from lepton_cdk.checks import PolicyChecks

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


def test_example_cdktf_json_runs_main_py():
    config = json.loads((EXAMPLE / "cdktf.json").read_text())
    assert config["language"] == "python" and config["app"].endswith("python main.py") and config["output"] == "cdktf.out"
    assert (EXAMPLE / "README.md").is_file()


def test_example_prints_one_error_line_for_a_missing_manifest(tmp_path):
    proc = subprocess.run([sys.executable, "main.py"], cwd=EXAMPLE, capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
                               "CDKTF_OUTDIR": str(tmp_path / "out"), "EXAMPLE_MANIFEST": str(tmp_path / "missing.json")})
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: manifest not found"), proc.stderr
