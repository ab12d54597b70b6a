"""`lepton review` with real Terraform plans: the pairs of tests/support/review_pairs.py against moto.

One base (the reference AWS stack with the SageMaker endpoint on ml.g4dn.xlarge and an extra KMS key) is
applied to moto once; each head is planned against that state with the real AWS provider 5.100.0
(`terraform plan` + `show -json`, the JSON `lepton review --plan` reads). The transfer pair is planned
without being applied (moto lacks DataSync's tag calls, so its creation could not be applied; planning it
needs no DataSync call). For every pair the comment must show Terraform's verdict (no static-diff banner),
the replacement warning, the attribute diffs, the cost difference and the coverage counts, and the static
diff of the same pair must predict the same resources and actions (moto's known drift aside, see
``MOTO_DRIFT``). ``--plan-from-state`` is run through the CLI on one pair, and a ``prevent_destroy``
refusal on a tiny stack.

The golden bucket-rename plan (tests/golden/review/bucket-rename.plan.json) is this test's plan, cut down
by ``sanitize_plan``; the test checks it still is (``LEPTON_UPDATE_GOLDEN=1`` rewrites it).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from lepton_cdk.cli import main
from lepton_cdk.review import build_review, render_markdown
from lepton_cdk.review.changes import plan_changes, static_changes
from lepton_cdk.review.plan import parse_plan
from lepton_cdk.review.resources import read_stack_documents
from lepton_cdk.testing import AwsEmulator
from tests.support.emulators import MOTO_AMI_ID, aws_env, boto3_client
from tests.support.review_pairs import (
    HMAC_SECRET_ID,
    MOTO_DRIFT,
    PAIRS,
    STACK,
    fixed_manifest,
    sanitize_plan,
    synth_stack,
)
from tests.support.terraform import REPO_ROOT, Terraform, tool_env

pytestmark = pytest.mark.integration

GOLDEN_PLAN = REPO_ROOT / "tests" / "golden" / "review" / "bucket-rename.plan.json"
BUCKET = "aws_s3_bucket.ModelBucket_B33D855B"
ASG = "aws_autoscaling_group.GpuNodes_319A5FAE"
ENDPOINT_CONFIG = "aws_sagemaker_endpoint_configuration.SageMaker_EndpointConfig_07735855"


@pytest.fixture(scope="module")
def applied(moto_server, tf_cli_config, tmp_path_factory) -> dict:
    """The base applied to a freshly reset moto, and every head synthesized against the same state file."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10).close()
    root = tmp_path_factory.mktemp("review-plan")
    manifest = fixed_manifest(root / "model")
    shared = {"LEPTON_AWS_ENDPOINT": moto_server, "LEPTON_IMAGE_ID": MOTO_AMI_ID, "LEPTON_STATE_DIR": str(root / "state")}
    env = tool_env({**aws_env(moto_server), "TF_CLI_CONFIG_FILE": str(tf_cli_config)})
    timings = {}
    base = synth_stack(root / "base", manifest, settings=shared)
    tf = Terraform(base / "stacks" / STACK, env)
    tf("init", "-input=false", "-no-color")
    started = time.monotonic()
    tf("apply", "-auto-approve", "-input=false", "-no-color")
    timings["apply"] = round(time.monotonic() - started, 1)
    # the DataSync source location reads the Cloud Storage HMAC key from Secrets Manager at plan time
    boto3_client("secretsmanager", moto_server).create_secret(
        Name=HMAC_SECRET_ID, SecretString=json.dumps({"access_key": "GOOG1EXAMPLE", "secret_key": "not-a-real-secret"}))
    heads = {name: synth_stack(root / name, manifest, settings={**shared, **extra}, archive_key=keep, bucket_prefix=prefix)
             for name, (extra, keep, prefix) in PAIRS.items()}
    applied = {"root": root, "base": base, "heads": heads, "env": env, "moto": moto_server, "timings": timings}
    started = time.monotonic()  # (side by side they take as long: moto and the provider share the same cores)
    applied["plans"] = {name: terraform_plan(applied, name) for name in PAIRS}
    timings["5 plans"] = round(time.monotonic() - started, 1)
    return applied


def terraform_plan(applied: dict, name: str) -> tuple[Path, dict]:
    """(plan JSON file, its content) of head ``name`` against the applied base's state."""
    tf = Terraform(applied["heads"][name] / "stacks" / STACK, applied["env"])
    tf("init", "-input=false", "-no-color")
    tf("plan", "-input=false", "-no-color", "-lock=false", "-out=plan.bin")
    text = tf("show", "-json", "plan.bin").stdout
    path = applied["root"] / f"{name}.plan.json"
    path.write_text(text)
    return path, json.loads(text)


def actions(changes) -> dict[str, str]:
    return {c.address: c.action for c in changes.changes}


EXPECTED = {  # what each change is, resource by resource, besides moto's drift
    "bucket-rename": {BUCKET: "replace", ASG: "update"},
    "node-count": {ASG: "update"},
    "key-deletion": {"aws_kms_key.ArchiveKey": "delete"},
    "sagemaker-type": {ENDPOINT_CONFIG: "replace"},
    "transfer-added": {"aws_datasync_task.Transfer_DCE8283A": "create", "aws_s3_bucket.DataBucket_E3889A50": "create"},
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_the_plan_of_each_pair_is_what_the_comment_reports(applied, name):
    plan_file, doc = applied["plans"][name]
    base, head = applied["base"], applied["heads"][name]
    review = build_review(head, base=base, plans=[str(plan_file)], checkov=False)
    aws = next(s for s in review.stacks if s.name == STACK)
    planned = actions(aws.changes)
    assert aws.changes.source == "plan" and EXPECTED[name].items() <= planned.items(), planned
    # the static diff of the same pair predicts Terraform's resources and actions; moto's drift is all that differs
    static = actions(static_changes(read_stack_documents(head)[0], read_stack_documents(base)[0]))
    assert {a: v for a, v in planned.items() if a not in MOTO_DRIFT} == {a: v for a, v in static.items() if a not in MOTO_DRIFT}
    assert {a: v for a, v in planned.items() if a in MOTO_DRIFT}.items() <= MOTO_DRIFT.items()

    text = render_markdown(review)
    assert "Static diff" not in text and f"Terraform {doc['terraform_version']} plan" in text
    coverage = aws.cost_head.coverage()
    assert f"Coverage: {sum(coverage.values())} resources: {coverage['priced']} priced, {coverage['free']} free, " \
           f"{coverage['unknown']} unknown." in text
    assert sum(coverage.values()) == len(read_stack_documents(head)[0].resource_bodies())
    by_address = {c.address: c for c in aws.changes.changes}
    if name == "bucket-rename":
        bucket = by_address[BUCKET]
        assert bucket.forced_by == ("bucket_prefix",) and bucket.data == "bucket"
        assert "> [!CAUTION]" in text and f"`{BUCKET}` (bucket) is **replaced" in text
        replaced = [a for a, v in planned.items() if v == "replace"]
        assert sum(a.startswith("aws_s3_object.") for a in replaced) == 2 and len(replaced) >= 10
        assert '      bucket_prefix: "lepton-models-" -> "acme-models-"  # forces replacement' in text
        live = plan_changes(parse_plan(sanitize_plan(doc, {a for a in MOTO_DRIFT if a.startswith("aws_vpc_security_group")}), "live"))
        if os.environ.get("LEPTON_UPDATE_GOLDEN") == "1":
            GOLDEN_PLAN.write_text(json.dumps(sanitize_plan(doc, {a for a in MOTO_DRIFT if a.startswith("aws_vpc_security_group")}),
                                              indent=1, sort_keys=True) + "\n")
        golden = plan_changes(parse_plan(json.loads(GOLDEN_PLAN.read_text()), "golden"))
        assert [(c.address, c.action, c.forced_by) for c in live.changes] == \
               [(c.address, c.action, c.forced_by) for c in golden.changes], "the golden plan is no longer what Terraform plans"
    elif name == "node-count":
        assert [(a.path, a.before, a.after) for a in by_address[ASG].attributes] == [
            ("desired_capacity", "1", "3"), ("max_size", "1", "3"), ("min_size", "1", "3")]
        assert aws.total("head") - aws.total("base") > 0 and "(+" in text.split("| **total** |")[1].splitlines()[0]
    elif name == "key-deletion":
        assert "`aws_kms_key.ArchiveKey` (key) is **destroyed**" in text and "deletion window (7 days)" in text
        assert aws.total("base") - aws.total("head") == pytest.approx(1.0)  # one customer managed key a month
    elif name == "sagemaker-type":
        assert "production_variants[0].instance_type" in by_address[ENDPOINT_CONFIG].forced_by
        assert '      production_variants[0].instance_type: "ml.g4dn.xlarge" -> "ml.g4dn.2xlarge"  # forces replacement' in text
        assert aws.total("head") > aws.total("base")
    else:
        assert coverage["unknown"] == 1 and "DataSync charges" in text  # the per-GB fee: usage, counted as unknown
        assert sum(v == "create" for v in planned.values()) >= 20


def test_plan_from_state_runs_terraform_itself_and_the_budget_fails_naming_the_figure(applied, monkeypatch, capsys, tmp_path):
    for key in [k for k in os.environ if k.startswith(("TF_", "LEPTON_"))]:
        monkeypatch.delenv(key)
    for key, value in applied["env"].items():
        if key.startswith(("AWS_", "TF_")) or key in ("NO_PROXY", "no_proxy", "CHECKPOINT_DISABLE"):
            monkeypatch.setenv(key, value)
    head, base = applied["heads"]["node-count"], applied["base"]
    started = time.monotonic()
    status = main(["review", str(head), "--base", str(base), "--plan-from-state", "--save-plans", str(tmp_path / "plans"),
                   "--no-checkov", "--format", "json", "--fail-on-increase-percent", "50"])
    applied["timings"]["review --plan-from-state"] = round(time.monotonic() - started, 1)
    out = capsys.readouterr()
    doc = json.loads(out.out)
    (stack,) = doc["stacks"]
    assert stack["changes"]["source"] == "plan", stack["changes"]["no_plan_reason"]
    assert any(c["address"] == ASG and c["action"] == "update" for c in stack["changes"]["resources"])
    before, after = doc["totals_monthly_usd"]["base"]["on-demand"], doc["totals_monthly_usd"]["head"]["on-demand"]
    pct = (after - before) / before * 100
    assert pct > 50 and status == 3  # two more g5.xlarge nodes: far above 50 %
    (line,) = out.err.strip().splitlines()
    assert f"{pct:+.1f}%" in line and "--fail-on-increase-percent 50%" in line
    # the plan it made is kept, as Terraform wrote it
    saved = plan_changes(parse_plan(json.loads((tmp_path / "plans" / f"{STACK}.plan.json").read_text()), "saved"))
    assert actions(saved)[ASG] == "update"
    print(f"\ntimings (s): {applied['timings']}")


def test_plan_from_state_reports_a_prevent_destroy_refusal(applied, tmp_path, monkeypatch):
    for key, value in applied["env"].items():
        if key.startswith(("AWS_", "TF_")):
            monkeypatch.setenv(key, value)
    stack_dir = tmp_path / "cdktf.out" / "stacks" / "guarded"
    stack_dir.mkdir(parents=True)
    moto = applied["moto"]

    settings = AwsEmulator(moto).provider_settings()

    def write(trigger: str) -> None:
        (stack_dir / "cdk.tf.json").write_text(json.dumps({
            "terraform": {"backend": {"local": {"path": str(tmp_path / "guarded.tfstate")}},
                          "required_providers": {"aws": {"source": "aws", "version": "5.100.0"}}},
            "provider": {"aws": [{**settings, "endpoints": [settings["endpoints"]]}]},
            "resource": {"terraform_data": {"guarded": {"triggers_replace": trigger, "lifecycle": {"prevent_destroy": True}}}},
        }))

    write("v1")
    tf = Terraform(stack_dir, applied["env"])
    tf("init", "-input=false", "-no-color")
    tf("apply", "-auto-approve", "-input=false", "-no-color")
    write("v2")  # triggers_replace forces a replacement, which prevent_destroy forbids
    review = build_review(tmp_path / "cdktf.out", plan_from_state=True, checkov=False)
    (stack,) = review.stacks
    assert stack.refused == ("terraform_data.guarded",) and "prevent_destroy" in stack.no_plan_reason
    text = render_markdown(review)
    assert "> [!CAUTION]" in text and "`guarded` `terraform_data.guarded`: `terraform plan` refused" in text
