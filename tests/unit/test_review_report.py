"""`lepton review` over real synthesized stacks of both clouds: counts, costs, diff, policy and the comment."""

from __future__ import annotations

import csv
import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from lepton_cdk.cli import main
from lepton_cdk.contract import ContractError, SchemaVersionError, read_manifest
from lepton_cdk.review import COMMENT_MARKER, ReviewError, build_review, render_markdown, review_to_dict
from lepton_cdk.review import policy as policy_module
from tests.support.manifests import write_fake_manifest
from tests.support.terraform import synth_infra

AWS, GCP = "lepton-aws", "lepton-gcp"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[Path, Path]:
    """(cdktf.out with both stacks, the manifest it deploys), synthesized once for this module."""
    root = tmp_path_factory.mktemp("review")
    manifest = write_fake_manifest(root / "model")
    synth_infra(root / "cdktf.out", {"LEPTON_TARGET": "all", "LEPTON_MANIFEST": str(manifest)})
    return root / "cdktf.out", manifest


@pytest.fixture
def out_copy(synth, tmp_path) -> Path:
    """A copy of the synth that a test may edit."""
    return Path(shutil.copytree(synth[0], tmp_path / "cdktf.out"))


def edit_stack(out: Path, stack: str, change) -> None:
    path = out / "stacks" / stack / "cdk.tf.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def catalog_price(cloud, region, sku, pricing, tier_start="") -> float:
    rows = csv.DictReader(resources.files("lepton_cdk.review").joinpath("prices.csv").read_text().splitlines())
    (row,) = [r for r in rows if (r["cloud"], r["region"], r["sku"], r["pricing"]) == (cloud, region, sku, pricing)
              and r["tier_start_gib"] == tier_start]
    return float(row["price_usd"])


def stack(review, name):
    return next(s for s in review.stacks if s.name == name)


def component(stack_review, address_part, name_part):
    """The one cost component of the head whose resource address contains ``address_part`` and name ``name_part``."""
    (found,) = [c for r in stack_review.cost_head.resources if address_part in r.address for c in r.components if name_part in c.name]
    return found


def resource(stack_review, address_part):
    (found,) = [r for r in stack_review.cost_head.resources if address_part in r.address]
    return found


def test_resources_are_counted_by_type_for_both_clouds(synth):
    review = build_review(synth[0], checkov=False)
    aws, gcp = stack(review, AWS), stack(review, GCP)
    assert (aws.cloud, aws.region, gcp.cloud, gcp.region) == ("aws", "us-east-1", "gcp", "us-central1")
    counts = {t.rtype: t.count for t in aws.types}
    assert counts["aws_autoscaling_group"] == 1 and counts["aws_s3_object"] == 2 and counts["aws_subnet"] == 2
    assert counts["aws_s3_bucket"] == 2  # the model bucket and its access-log bucket
    assert counts["aws_lb"] == 1 and counts["aws_cloudwatch_metric_alarm"] == 4  # MigrationTarget's serving and monitoring
    assert sum(counts.values()) == 48
    gcounts = {t.rtype: t.count for t in gcp.types}
    assert gcounts["google_compute_region_instance_group_manager"] == 1 and gcounts["google_storage_bucket_object"] == 2
    assert gcounts["google_storage_bucket"] == 2  # the model bucket and its usage-log bucket
    assert gcounts["google_compute_forwarding_rule"] == 1
    assert sum(gcounts.values()) == 22


def test_gpu_node_and_storage_costs_match_the_catalog_by_hand(synth):
    out, manifest_path = synth
    review = build_review(out, checkov=False)
    aws, gcp = stack(review, AWS), stack(review, GCP)
    # the demo's defaults: one g5.xlarge in us-east-1, one g2-standard-4 (L4 bundled) in us-central1
    nodes = component(aws, "aws_autoscaling_group", "instances")
    assert nodes.monthly == pytest.approx(1 * 730 * catalog_price("aws", "us-east-1", "g5.xlarge", "on-demand"))
    assert nodes.spot_monthly == pytest.approx(730 * catalog_price("aws", "us-east-1", "g5.xlarge", "spot")) and nodes.estimate
    g2 = component(gcp, "region_instance_group_manager", "instances")
    assert g2.monthly == pytest.approx(730 * catalog_price("gcp", "us-central1", "g2-standard-4", "on-demand"))
    gpus = [c for c in resource(gcp, "region_instance_group_manager").components if "GPU" in c.name]
    assert gpus == []  # bundled: no separate accelerator charge
    # every uploaded object is priced by its bytes: the manifest's artifacts, as staged in cdktf.out
    artifacts = read_manifest(manifest_path, verify=False).artifacts
    s3 = [component(aws, f"Object-{a.name}_", "storage") for a in artifacts]
    assert sum(c.quantity for c in s3) * 2**30 == pytest.approx(sum(a.bytes for a in artifacts))
    assert sum(c.monthly for c in s3) == pytest.approx(sum(a.bytes for a in artifacts) / 2**30
                                                       * catalog_price("aws", "us-east-1", "s3-standard", "list"))
    gcs = [component(gcp, f"Object-{a.name}_", "storage") for a in artifacts]
    assert sum(c.monthly for c in gcs) == pytest.approx(sum(a.bytes for a in artifacts) / 2**30
                                                        * catalog_price("gcp", "us-central1", "gcs-standard", "list"))
    # --manifest prices the objects by the manifest's sizes (matched by key): the same bytes as the staged files
    with_manifest = stack(build_review(out, manifest=manifest_path, checkov=False), AWS)
    assert [component(with_manifest, f"Object-{a.name}_", "storage").quantity for a in artifacts] == [c.quantity for c in s3]


def test_with_a_manifest_the_review_checks_what_every_stack_uploads(synth, out_copy):
    out, manifest_path = synth
    manifest = read_manifest(manifest_path)
    check = build_review(out, manifest=manifest_path, checkov=False).manifest
    assert check.passed and check.objects_checked == 2 * len(manifest.artifacts) and check.stacks_checked == (AWS, GCP)
    assert build_review(out, checkov=False).manifest is None and review_to_dict(build_review(out, checkov=False))["manifest"] is None

    # the GCP stack stops uploading the preprocessing file: the comment says so, the AWS stack still matches
    edit_stack(out_copy, GCP, lambda doc: [doc["resource"]["google_storage_bucket_object"].pop(n)
                                           for n in list(doc["resource"]["google_storage_bucket_object"]) if "preprocessing" in n])
    review = build_review(out_copy, manifest=manifest_path, checkov=False)
    (finding,) = review.manifest.findings
    assert (finding.stack, finding.resource) == (GCP, "artifact 'preprocessing'") and "uploads no object" in finding.message
    assert review_to_dict(review)["manifest"]["findings"] == [finding.to_dict()]
    assert f"- `{GCP}` `artifact 'preprocessing'`: the stack uploads no object" in render_markdown(review)


def test_node_groups_are_priced_at_their_desired_size_with_attached_gpus_separately(out_copy):
    def aws(doc):
        (asg,) = doc["resource"]["aws_autoscaling_group"].values()
        asg["min_size"], asg["desired_capacity"], asg["max_size"] = 1, 2, 3

    def gcp(doc):
        (template,) = doc["resource"]["google_compute_instance_template"].values()
        template["machine_type"], template["guest_accelerator"] = "n1-standard-8", [{"count": 2, "type": "nvidia-tesla-t4"}]

    edit_stack(out_copy, AWS, aws)
    edit_stack(out_copy, GCP, gcp)
    review = build_review(out_copy, checkov=False)
    hourly = catalog_price("aws", "us-east-1", "g5.xlarge", "on-demand")
    nodes = component(stack(review, AWS), "aws_autoscaling_group", "instances")
    assert (nodes.quantity, nodes.monthly) == (2 * 730, pytest.approx(2 * 730 * hourly))  # desired, not min or max
    machine = component(stack(review, GCP), "region_instance_group_manager", "instances (n1-standard-8)")
    gpus = component(stack(review, GCP), "region_instance_group_manager", "GPUs")
    assert machine.monthly == pytest.approx(730 * catalog_price("gcp", "us-central1", "n1-standard-8", "on-demand"))
    assert gpus.name == "GPUs (2 x nvidia-tesla-t4 per node)"
    assert gpus.monthly == pytest.approx(2 * 730 * catalog_price("gcp", "us-central1", "nvidia-tesla-t4", "on-demand"))


def test_an_unknown_instance_type_is_priced_unknown_never_zero(out_copy):
    def unknown(doc):
        (template,) = doc["resource"]["aws_launch_template"].values()
        template["instance_type"] = "g6.xlarge"

    edit_stack(out_copy, AWS, unknown)
    review = build_review(out_copy, checkov=False)
    group = resource(stack(review, AWS), "aws_autoscaling_group")
    assert group.status == "unknown" and "g6.xlarge" in group.reason and "us-east-1" in group.reason
    text = render_markdown(review)
    assert "| instances (g6.xlarge) | 730 h | ? | **unknown** |" in text.replace("`aws_autoscaling_group.GpuNodes_319A5FAE` ", "")
    assert "**1 unknown**" in text and f"- `{group.address}`: no on-demand price for g6.xlarge in aws us-east-1" in text


def test_the_base_diff_lists_added_changed_and_removed_resources(synth, out_copy, tmp_path):
    base = Path(shutil.copytree(synth[0], tmp_path / "base"))

    def older(doc):
        doc["resource"].pop("aws_kms_alias")  # head adds it
        (asg,) = doc["resource"]["aws_autoscaling_group"].values()
        asg["max_size"] = 4  # head changes it
        doc["resource"]["aws_sqs_queue"] = {"Old": {"name": "old"}}  # head removes it

    edit_stack(base, AWS, older)
    shutil.rmtree(base / "stacks" / GCP)  # the GCP stack is new in head
    review = build_review(out_copy, base=base, checkov=False)
    aws = {t.rtype: t for t in stack(review, AWS).types}
    assert aws["aws_kms_alias"].added == ("aws_kms_alias.ModelBucket_KeyAlias_67327DE6",)
    assert aws["aws_autoscaling_group"].changed == ("aws_autoscaling_group.GpuNodes_319A5FAE",)
    assert aws["aws_sqs_queue"].removed == ("aws_sqs_queue.Old",) and aws["aws_sqs_queue"].count == 0
    assert sum(len(t.added) + len(t.changed) + len(t.removed) for t in aws.values()) == 3
    assert stack(review, AWS).status == "changed" and stack(review, GCP).status == "new"
    text = render_markdown(review)
    assert "+ aws_kms_alias.ModelBucket_KeyAlias_67327DE6" in text and "- aws_sqs_queue.Old" in text
    assert "| `aws_autoscaling_group` | 1 | 0 | 1 | 0 |" in text
    # the same synth as its own base changes nothing
    assert stack(build_review(synth[0], base=synth[0], checkov=False), AWS).status == "unchanged"


def test_markdown_is_one_marked_comment_with_costs_policy_and_migration(synth, tmp_path, monkeypatch):
    monkeypatch.setattr(policy_module, "checkov_executable", lambda: None)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({
        "schema_version": "1.0.0", "kind": "lepton-cdk/data-plan",
        "source": {"cloud": "aws", "region": "us-east-1", "uri": "s3://src/data/"},
        "destination": {"cloud": "gcp", "region": "us-central1", "uri": "gs://dst/data/"},
        "objects_to_copy": 10, "bytes_to_copy": 100 * 2**30, "objects_to_delete": 0, "bytes_to_delete": 0}))
    text = render_markdown(build_review(synth[0], data_plan=plan))
    assert text.splitlines()[0] == COMMENT_MARKER
    assert "### `lepton-aws` (aws us-east-1)" in text and "### `lepton-gcp` (gcp us-central1)" in text
    assert "checkov: did not run: checkov is not installed" in text
    g5 = catalog_price("aws", "us-east-1", "g5.xlarge", "on-demand")
    assert f"| instances (g5.xlarge) | 730 h | ${g5:g} / " in text and f"| ${730 * g5:,.2f} |" in text
    egress = 100 * catalog_price("aws", "us-*|eu-*", "internet", "list", tier_start="0")
    assert f"100 GB x $0.09 = ${egress:,.2f}" in text
    assert "egress waiver" in text and "retrieved 2024-06-01" in text and "--prices" in text


def test_the_policy_report_is_read_and_a_malformed_one_refused(out_copy):
    report = out_copy / "lepton-policy-report.json"
    report.write_text(json.dumps({"schema_version": "1.0.0", "findings": [
        {"stack": AWS, "rule": "LEPTON-S3-TLS", "level": "error", "resource": "lepton-aws/ModelBucket", "message": "no TLS-only policy"},
        {"stack": AWS, "rule": "LEPTON-VERSIONING", "level": "warning", "resource": "lepton-aws/ModelBucket",
         "message": "unversioned", "suppressed": True, "reason": "scratch bucket"}]}))
    review = build_review(out_copy, checkov=False)
    text = render_markdown(review)
    assert "lepton policy: 1 open finding(s), 1 suppressed" in text
    assert "error `LEPTON-S3-TLS` lepton-aws/ModelBucket: no TLS-only policy" in text
    assert "suppressed `LEPTON-VERSIONING` lepton-aws/ModelBucket: scratch bucket" in text
    assert stack(review, GCP).findings == []
    report.write_text(json.dumps({"schema_version": "1.0.0", "findings": [{"stack": AWS}]}))
    with pytest.raises(ContractError, match=r"policy report .* \$\.findings\[0\]: missing required field 'rule'"):
        build_review(out_copy, checkov=False)
    report.write_text(json.dumps({"schema_version": "1.0.0", "findings": [
        {"stack": AWS, "rule": "LEP-S3-1", "level": "fatal", "resource": "r", "message": "m"}]}))
    with pytest.raises(ContractError, match="'fatal' is not one of"):
        build_review(out_copy, checkov=False)
    report.write_text(json.dumps({"schema_version": "2.0.0", "findings": []}))
    with pytest.raises(SchemaVersionError, match="policy report .* upgrade lepton-cdk"):
        build_review(out_copy, checkov=False)


@pytest.mark.skipif(policy_module.checkov_executable() is None, reason="checkov is not installed")
def test_checkov_runs_offline_and_reports_failed_check_ids(synth):
    result = policy_module.run_checkov(synth[0] / "stacks" / AWS / "cdk.tf.json")
    assert result.ran, result.reason
    # failed counts resources, failed_ids distinct checks: one check can fail on the model and the log bucket
    assert result.passed > 0 and result.failed >= len(result.failed_ids) > 0
    assert all(i.startswith("CKV") for i in result.failed_ids)


def test_a_reviewed_baseline_separates_accepted_failures_from_new_ones(synth, tmp_path, capsys):
    stack_file = synth[0] / "stacks" / AWS / "cdk.tf.json"
    raw = policy_module.run_checkov(stack_file)
    assert raw.ran, raw.reason
    accepted_id, *others = raw.failed_ids
    assert others, "the demo stack fails more than one check; the test needs one accepted and one new"
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(f"version: 1\naccepted:\n  - check: {accepted_id}\n    resource: '*'\n"
                        "    reason: accepted for this test, to see the others reported as new\n")
    review = build_review(synth[0], checkov_baseline=baseline)
    [aws] = [s for s in review.stacks if s.name == AWS]
    assert aws.checkov.baselined and aws.checkov.failed == raw.failed
    assert accepted_id not in aws.checkov.new_ids and set(aws.checkov.new_ids) == set(others)
    assert 0 < aws.checkov.accepted < aws.checkov.failed
    assert f"{aws.checkov.failed - aws.checkov.accepted} new**" in render_markdown(review)

    # a baseline entry without a reason is refused with one line, before anything is scanned
    baseline.write_text(f"version: 1\naccepted:\n  - check: {accepted_id}\n    resource: '*'\n")
    assert main(["review", str(synth[0]), "--checkov-baseline", str(baseline)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a reason" in err[0]


@pytest.mark.parametrize("breakage, message", [
    (lambda p: p.write_text("{not json"), "is not valid JSON"),
    (lambda p: p.write_text("[]"), "not a Terraform JSON object"),
    (lambda p: p.write_text(json.dumps({"resource": {"aws_vpc": ["x"]}})), "not an object of named resources"),
])
def test_a_malformed_cdktf_out_is_one_clear_error(out_copy, breakage, message):
    breakage(out_copy / "stacks" / AWS / "cdk.tf.json")
    with pytest.raises(ReviewError, match=message):
        build_review(out_copy, checkov=False)


def test_the_cli_prints_json_and_one_line_errors(synth, tmp_path, capsys):
    assert main(["review", str(synth[0]), "--no-checkov", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in doc["stacks"]] == [AWS, GCP]
    assert doc["stacks"][0]["resources"]["aws_s3_object"]["count"] == 2
    assert main(["review", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no synthesized stacks") and "\n" not in err
    assert main(["target", "recommend", "--gpu-memory-gib", "20", "--clouds", "gcp", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["instance_type"] == "g2-standard-4"
