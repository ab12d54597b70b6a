"""`lepton review` on base/head pairs: what changes (static diff or a Terraform plan), what it costs, what it risks.

The pairs (tests/support/review_pairs.py) are the reference AWS stack and one change each: a bucket
renamed, nodes 1 -> 3, a key deleted, the SageMaker instance type changed, a DataSync copy added. Without
a plan the comment must say it is a static diff and still find the replacement a bucket rename forces;
with a plan (hand-written JSON here; real ones from moto in tests/integration/test_review_plan.py) it
reports Terraform's own verdict. Costs are checked against the catalog rows by hand, never against
numbers typed into the test.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest

from lepton_cdk.cli import main
from lepton_cdk.review import ReviewError, build_review, render_markdown, review_to_dict
from lepton_cdk.review.changes import plan_changes, static_changes
from lepton_cdk.review.costs import HOURS_PER_MONTH
from lepton_cdk.review.plan import parse_plan
from lepton_cdk.review.prices import load_catalog
from lepton_cdk.review.pricing import DEFAULT_USAGE, FREE, PRICERS, Inventory, stack_cost
from lepton_cdk.review.resources import StackDocument, read_stack_documents
from lepton_cdk.review.terraform import why_no_plan
from tests.support.review_pairs import PAIRS, STACK, fixed_manifest, synth_pair, synth_stack
from tests.support.terraform import REPO_ROOT, synth_infra

GOLDEN = REPO_ROOT / "tests" / "golden" / "review"
UPDATE_GOLDEN = os.environ.get("LEPTON_UPDATE_GOLDEN") == "1"
BUCKET = "aws_s3_bucket.ModelBucket_B33D855B"
ASG = "aws_autoscaling_group.GpuNodes_319A5FAE"
ENDPOINT_CONFIG = "aws_sagemaker_endpoint_configuration.SageMaker_EndpointConfig_07735855"
ENDPOINT = "aws_sagemaker_endpoint.SageMaker_61DF4BF9"
# The settings the moto base of tests/integration/test_review_plan.py uses (its port aside): the golden's plan came from there.
EMULATOR_SETTINGS = {"LEPTON_AWS_ENDPOINT": "http://127.0.0.1:5000", "LEPTON_IMAGE_ID": "ami-1e749f67"}


def price(kind: str, sku: str, pricing: str = "list", region: str = "us-east-1") -> float:
    """The shipped catalog's price for ``sku`` in ``region`` (read from the CSV, as a reviewer would)."""
    catalog = load_catalog()
    return catalog.find("aws", region, kind, sku, pricing).price_usd


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """{pair: (base cdktf.out, head cdktf.out)} for every pair, one shared base (real-AWS provider settings)."""
    root = tmp_path_factory.mktemp("pairs")
    manifest = fixed_manifest(root / "model")
    out = {}
    for name in PAIRS:
        out[name] = synth_pair(root, name, manifest)
    return out


def static_review(pairs, name, **kwargs):
    base, head = pairs[name]
    return build_review(head, base=base, checkov=False, **kwargs)


def stack_of(review, name=STACK):
    return next(s for s in review.stacks if s.name == name)


def change_of(stack_review, address):
    (found,) = [c for c in stack_review.changes.changes if c.address == address]
    return found


# -- without a plan: the static diff ---------------------------------------------------------------------------------

def test_every_pair_without_a_plan_says_first_that_it_is_a_static_diff(pairs):
    for name in PAIRS:
        text = render_markdown(static_review(pairs, name))
        head = "\n".join(text.splitlines()[:12])
        assert "**Static diff** for `lepton-aws`" in head and "may miss replacements" in head, name
        assert "--plan-from-state" in head


def test_a_bucket_rename_is_found_as_a_replacement_with_everything_it_drags_along(pairs):
    review = static_review(pairs, "bucket-rename")
    aws = stack_of(review, STACK)
    bucket = change_of(aws, BUCKET)
    assert bucket.action == "replace" and bucket.forced_by == ("bucket_prefix",) and bucket.data == "bucket"
    (attr,) = bucket.attributes
    assert (attr.path, attr.before, attr.after, attr.forces_replacement) == ("bucket_prefix", '"lepton-models-"', '"acme-models-"', True)
    # what refers to the bucket through an attribute that forces a replacement goes with it: its guard rails
    # and the uploaded model; the nodes' and SageMaker's policies only update
    replaced = {c.address.split(".")[0] for c in aws.changes.changes if c.action == "replace"}
    assert {"aws_s3_bucket_versioning", "aws_s3_bucket_server_side_encryption_configuration", "aws_s3_bucket_policy",
            "aws_s3_bucket_public_access_block", "aws_s3_object", "aws_sagemaker_model"} <= replaced
    assert change_of(aws, "aws_iam_role_policy.GpuNodes_Role_Policy_A5F11F10").action == "update"
    assert change_of(aws, ASG).action == "update"  # its launch template gets a new version (user data names the bucket)
    assert aws.changes.count("create") == 0 and aws.changes.count("delete") == 0
    text = render_markdown(review)
    top = text.split("### ")[0]
    assert "> [!CAUTION]" in top and f"`{BUCKET}` (bucket) is **replaced" in top and "`bucket_prefix` changes" in top
    assert "2 uploaded object(s) are uploaded again" in top
    assert f'-/+ {BUCKET}' in text or f'+/- {BUCKET}' in text
    assert '      bucket_prefix: "lepton-models-" -> "acme-models-"  # forces replacement' in text
    assert "(no change) on-demand" in top and "$0.00 (" not in top  # a rename costs nothing more: no percentage of nothing


def test_with_prevent_destroy_kept_the_rename_is_flagged_as_one_terraform_refuses(tmp_path):
    manifest = fixed_manifest(tmp_path / "model")
    base, head = synth_pair(tmp_path, "bucket-rename", manifest, base_settings={"LEPTON_RETAIN_DATA": "true"})
    review = build_review(head, base=base, checkov=False)
    bucket = change_of(stack_of(review), BUCKET)
    assert bucket.action == "replace" and bucket.prevent_destroy
    assert "Terraform will refuse to apply it: the head keeps `prevent_destroy`" in render_markdown(review)


def test_a_node_count_change_shows_the_attributes_and_the_cost_difference(pairs):
    review = static_review(pairs, "node-count")
    aws = stack_of(review)
    (asg,) = aws.changes.changes
    assert asg.action == "update" and [(a.path, a.before, a.after) for a in asg.attributes] == [
        ("desired_capacity", "1", "3"), ("max_size", "1", "3"), ("min_size", "1", "3")]
    g5, g5_spot, gp3 = price("instance", "g5.xlarge", "on-demand"), price("instance", "g5.xlarge", "spot"), price("disk", "gp3")
    node_month = HOURS_PER_MONTH * g5 + 100 * gp3  # the launch template's 100 GiB gp3 root volume
    assert aws.total("head") - aws.total("base") == pytest.approx(2 * node_month)
    assert aws.total("head", "spot") - aws.total("base", "spot") == pytest.approx(2 * (HOURS_PER_MONTH * g5_spot + 100 * gp3))
    base_total = review.total("base")
    text = render_markdown(review)
    pct = 2 * node_month / base_total * 100
    assert f"+${2 * node_month:,.2f} (+{pct:.1f}%)" in text
    assert f"| `{ASG}` | ${node_month:,.2f} | ${3 * node_month:,.2f} | +${2 * node_month:,.2f} (+200.0%) |" in text
    assert f"| `{ASG}` | instances (g5.xlarge) | 2,190 h | ${g5:g} / ${g5_spot:g} spot* |" in text


def test_a_key_deletion_is_data_at_risk_with_its_deletion_window(pairs):
    review = static_review(pairs, "key-deletion")
    (key,) = stack_of(review).changes.changes
    assert (key.address, key.action, key.data) == ("aws_kms_key.ArchiveKey", "delete", "key")
    assert "deletion window (7 days)" in key.loss
    text = render_markdown(review)
    assert text.index("> [!CAUTION]") < text.index("**Static diff**")  # the warning comes first
    assert "`aws_kms_key.ArchiveKey` (key) is **destroyed**" in text
    assert f"-${price('key', 'aws-kms'):,.2f}" in text


def test_a_sagemaker_instance_type_change_replaces_the_configuration_and_prices_both_types(pairs):
    review = static_review(pairs, "sagemaker-type")
    aws = stack_of(review)
    config = change_of(aws, ENDPOINT_CONFIG)
    assert config.action == "replace" and config.forced_by == ("production_variants[0].instance_type",) and config.create_first
    assert change_of(aws, ENDPOINT).action == "update"
    old, new = price("managed-instance", "ml.g4dn.xlarge", "on-demand"), price("managed-instance", "ml.g4dn.2xlarge", "on-demand")
    assert aws.total("head") - aws.total("base") == pytest.approx(HOURS_PER_MONTH * (new - old))
    # no spot for endpoints: the same figure in both scenarios
    assert aws.total("head", "spot") - aws.total("base", "spot") == pytest.approx(HOURS_PER_MONTH * (new - old))
    assert f"+/- {ENDPOINT_CONFIG}" in render_markdown(review)


def test_a_transfer_job_added_is_new_resources_with_its_fee_unknown_and_counted(pairs):
    review = static_review(pairs, "transfer-added")
    aws = stack_of(review)
    assert aws.changes.count("create") == len(aws.changes.changes) > 20
    created = {c.address.split(".")[0] for c in aws.changes.changes}
    assert {"aws_datasync_task", "aws_datasync_location_s3", "aws_datasync_location_object_storage", "aws_s3_bucket"} <= created
    coverage = aws.cost_head.coverage()
    assert coverage["unknown"] == 1 and sum(coverage.values()) == len(read_stack_documents(pairs["transfer-added"][1])[0].resource_bodies())
    (task,) = [r for r in aws.cost_head.resources if r.status == "unknown"]
    assert task.rtype == "aws_datasync_task" and "per GB copied" in task.reason and "--data-plan" in task.reason
    text = render_markdown(review)
    assert "**1 unknown**" in text and f"- `{task.address}`: DataSync charges" in text
    # the new bucket's and log group's keys and requests are new monthly cost
    assert aws.total("head") > aws.total("base")


def test_a_data_plan_prices_the_datasync_fee_of_the_copy(pairs, tmp_path):
    plan = tmp_path / "data-plan.json"
    plan.write_text(json.dumps({
        "schema_version": "1.0.0", "kind": "lepton-cdk/data-plan", "mode": "full",
        "source": {"cloud": "gcp", "region": "us-central1", "uri": "gs://acme-raw/tables/"},
        "destination": {"cloud": "aws", "region": "us-east-1", "uri": "s3://data/"},
        "objects_to_copy": 10, "bytes_to_copy": 200 * 2**30, "objects_to_delete": 0, "bytes_to_delete": 0}))
    review = static_review(pairs, "transfer-added", data_plan=plan)
    (fee,) = [c for c in review.migration_costs if "DataSync fee" in c.label]
    assert fee.total_usd == pytest.approx(200 * price("transfer-service", "datasync-basic"))


# -- coverage -----------------------------------------------------------------------------------------------------------

def _synth_example(outdir: Path, manifest: Path) -> Path:
    spec = importlib.util.spec_from_file_location("example_existing_bucket", REPO_ROOT / "examples" / "existing-bucket" / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_app(outdir, {"EXAMPLE_MANIFEST": str(manifest), "EXAMPLE_ALERT_EMAIL": "oncall@example.com"}).synth()
    return outdir


def test_every_resource_of_the_reference_stacks_is_priced_free_or_unknown_with_a_reason(tmp_path):
    from tests.support.transfer_stacks import synth_transfer_app

    manifest = fixed_manifest(tmp_path / "model")
    env = {"LEPTON_MANIFEST": str(manifest), "LEPTON_TARGET": "all", "LEPTON_GCP_PROJECT": "lepton-demo",
           "LEPTON_STATE_DIR": str(tmp_path / "state")}
    full = {"LEPTON_STACK_PREFIX": "lepton-full", "LEPTON_ALERT_EMAILS": "oncall@example.com", "LEPTON_MANAGED_ENDPOINT": "true",
            "LEPTON_SPOT": "true", "LEPTON_SOURCE_URI": "gs://acme-raw/tables/", "LEPTON_SOURCE_HMAC_SECRET": "lepton/gcs-hmac",
            "LEPTON_DATASYNC_AGENTS": "arn:aws:datasync:us-east-1:123456789012:agent/agent-0123456789abcdef0"}
    synth_infra(tmp_path / "infra", env)
    synth_infra(tmp_path / "full", {**env, **full})
    outs = [tmp_path / "infra", tmp_path / "full", synth_transfer_app(tmp_path / "transfer"),
            _synth_example(tmp_path / "example", manifest)]
    catalog = load_catalog()
    seen_types, resources = set(), 0
    for out in outs:
        for stack in read_stack_documents(out):
            cost = stack_cost(Inventory.from_stack(stack), catalog)
            assert len(cost.resources) == len(stack.resource_bodies()), stack.name  # none left out
            resources += len(cost.resources)
            for r in cost.resources:
                seen_types.add(r.rtype)
                assert r.status in ("priced", "free", "unknown")
                assert "no price model" not in r.reason, f"{stack.name}: {r.address} has no price model"
                if r.status == "unknown":  # only what depends on a volume the synth cannot hold
                    assert r.rtype == "aws_datasync_task", f"{r.address}: {r.reason}"
                if r.status == "priced":
                    assert r.components and all(c.known for c in r.components) and r.monthly() >= 0
                    assert all(row.source_url.startswith("https://") and row.retrieved for c in r.components for row in c.rows)
    assert resources > 200 and seen_types <= set(PRICERS) | set(FREE)
    # what the issue names is in there and priced: keys, root disks, the load balancers, alarms, SageMaker, requests
    assert {"aws_kms_key", "aws_lb", "aws_cloudwatch_metric_alarm", "aws_sagemaker_endpoint", "google_kms_crypto_key",
            "google_compute_forwarding_rule", "google_monitoring_alert_policy", "aws_autoscaling_group",
            "google_compute_region_instance_group_manager", "aws_s3_bucket", "google_storage_bucket"} <= seen_types


def test_the_catalog_covers_what_the_issue_lists_with_a_source_and_date_on_every_row():
    catalog = load_catalog()
    wanted = [("aws", "key", "aws-kms"), ("gcp", "key", "gcp-kms-software"), ("aws", "disk", "gp3"), ("aws", "disk", "gp2"),
              ("gcp", "disk", "pd-balanced"), ("gcp", "disk", "pd-ssd"), ("aws", "load-balancer", "alb"),
              ("aws", "load-balancer", "alb-lcu"), ("gcp", "load-balancer", "gcp-forwarding-rule"),
              ("aws", "alarm", "cloudwatch-standard"), ("gcp", "alarm", "cloud-monitoring-condition"),
              ("aws", "network", "nat-gateway"), ("aws", "network", "interface-endpoint"),
              ("aws", "managed-instance", "ml.g5.xlarge"), ("aws", "managed-instance", "ml.g4dn.xlarge"),
              ("aws", "requests", "s3-standard-class-a"), ("gcp", "requests", "gcs-standard-class-b"),
              ("aws", "transfer-service", "datasync-basic"), ("gcp", "transfer-service", "sts-agentless")]
    for cloud, kind, sku in wanted:
        region = "us-east-1" if cloud == "aws" else "us-central1"
        pricing = "on-demand" if kind == "managed-instance" else "list"
        row = catalog.find(cloud, region, kind, sku, pricing)
        assert row is not None, (cloud, kind, sku)
    text = resources.files("lepton_cdk.review").joinpath("prices.csv").read_text()
    for row in csv.DictReader(text.splitlines()):
        assert row["source_url"].startswith("https://") and re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["retrieved"]), row
    assert any("per bucket" in line for line in DEFAULT_USAGE.lines())  # the stated usage is printed with the prices


def test_a_region_the_catalog_lacks_is_unknown_with_the_reason_never_zero(tmp_path):
    manifest = fixed_manifest(tmp_path / "model")
    out = synth_stack(tmp_path / "out", manifest, settings={"LEPTON_AWS_REGION": "ap-southeast-2"})
    cost = stack_cost(Inventory.from_stack(read_stack_documents(out)[0]), load_catalog())
    by_type = {r.rtype: r for r in cost.resources}
    assert by_type["aws_lb"].status == "unknown" and "ap-southeast-2" in by_type["aws_lb"].reason
    assert by_type["aws_kms_key"].status == "priced"  # one price in every region
    text = render_markdown(build_review(out, checkov=False))
    assert "No base and no plan for `lepton-aws`" in text and "**unknown**" in text


# -- with a plan -------------------------------------------------------------------------------------------------------

def plan_doc(changes: list[dict], config: dict[str, list[str]] | None = None) -> dict:
    """A hand-written `terraform show -json` plan: resource_changes and the configuration's resources."""
    return {"format_version": "1.2", "terraform_version": "1.11.4", "resource_changes": changes,
            "configuration": {"root_module": {"resources": [
                {"address": a, "mode": "managed", "type": a.split(".")[0], "name": a.split(".")[1],
                 "expressions": {k: {} for k in keys}} for a, keys in (config or {}).items()]}}}


def rc(address: str, actions: list[str], before=None, after=None, action_reason: str | None = None, **change) -> dict:
    rtype, name = address.split(".")
    item = {"address": address, "mode": "managed", "type": rtype, "name": name,
            "change": {"actions": actions, "before": before, "after": after, **change}}
    return {**item, "action_reason": action_reason} if action_reason else item


def test_a_plan_reports_replacements_with_the_forcing_attribute_and_masks_and_shortens_values():
    policy = json.dumps({"Statement": [{"Effect": "Allow", "Resource": "arn:aws:s3:::" + "x" * 200}]})
    doc = plan_doc([
        rc(BUCKET, ["create", "delete"], {"bucket": "old-1", "bucket_prefix": "old-", "arn": "arn:aws:s3:::old-1", "force_destroy": True},
           {"bucket_prefix": "new-", "force_destroy": True}, after_unknown={"bucket": True, "arn": True},
           replace_paths=[["bucket_prefix"]]),
        rc("aws_iam_role_policy.P", ["update"], {"policy": policy, "name": "p"}, {"name": "p"}, after_unknown={"policy": True}),
        rc("aws_db_instance.D", ["update"], {"password": "hunter2", "size": 1}, {"password": "hunter3", "size": 2},
           before_sensitive={"password": True}, after_sensitive={"password": True}),
        rc("aws_kms_key.K", ["delete"], {"deletion_window_in_days": 30}, None, action_reason="delete_because_no_resource_config"),
        rc("aws_vpc.V", ["no-op"], {"cidr_block": "10.0.0.0/16"}, {"cidr_block": "10.0.0.0/16"}),
    ], {BUCKET: ["bucket_prefix", "force_destroy"], "aws_iam_role_policy.P": ["policy", "name"], "aws_db_instance.D": ["password", "size"],
        "aws_vpc.V": ["cidr_block"]})
    changes = plan_changes(parse_plan(doc, "plan.json"))
    assert [(c.address, c.action, c.symbol) for c in changes.changes] == [
        ("aws_db_instance.D", "update", "~"), ("aws_iam_role_policy.P", "update", "~"), ("aws_kms_key.K", "delete", "-"),
        (BUCKET, "replace", "+/-")]
    bucket = next(c for c in changes.changes if c.address == BUCKET)
    # the computed arn and bucket name are left out (not in the configuration); the forcing attribute is shown
    assert [(a.path, a.before, a.after, a.forces_replacement) for a in bucket.attributes] == [
        ("bucket_prefix", '"old-"', '"new-"', True)]
    assert bucket.loss.startswith("every object in it is deleted")
    (pol,) = next(c for c in changes.changes if c.address == "aws_iam_role_policy.P").attributes
    assert pol.after == "(known after apply)" and pol.before.endswith(f"({len(json.dumps(policy)):,} chars)") and len(pol.before) < 70
    db = next(c for c in changes.changes if c.address == "aws_db_instance.D")
    assert [(a.path, a.before, a.after) for a in db.attributes] == [("size", "1", "2")]  # the password changed, but is never shown
    key = next(c for c in changes.changes if c.address == "aws_kms_key.K")
    assert key.because == "it is no longer in the configuration" and "(30 days)" in key.loss
    assert "hunter" not in json.dumps([c.to_dict() for c in changes.changes])


def test_plan_files_are_matched_to_stacks_and_bad_ones_are_one_clear_line(pairs, tmp_path, capsys):
    base, head = pairs["node-count"]
    stack = read_stack_documents(head)[0]
    config = {a: [] for a in stack.resource_bodies()}
    doc = plan_doc([rc(ASG, ["update"], {"desired_capacity": 1, "min_size": 1, "max_size": 1},
                       {"desired_capacity": 3, "min_size": 3, "max_size": 3})],
                   {**config, ASG: ["desired_capacity", "min_size", "max_size"]})
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(doc))
    review = build_review(head, base=base, plans=[str(plan)], checkov=False)  # matched by its resources
    aws = stack_of(review)
    assert aws.changes.source == "plan" and [c.address for c in aws.changes.changes] == [ASG]
    text = render_markdown(review)
    assert "Static diff" not in text and "**Changes** (Terraform 1.11.4 plan" in text
    assert build_review(head, base=base, plans=[f"{STACK}={plan}"], checkov=False).stacks[0].changes.source == "plan"

    state = tmp_path / "state.json"
    state.write_text(json.dumps({"format_version": "1.0", "terraform_version": "1.11.4", "values": {}}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(plan_doc([], {"aws_vpc.Elsewhere": []})))
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**doc, "format_version": "2.0"}))
    for args, message in [
        ([str(state)], "looks like `terraform show -json` of a state"),
        ([str(other)], "no synthesized stack has exactly its resources; name its stack with --plan STACK="),
        ([f"nope={plan}"], "there is no stack 'nope'"),
        ([str(newer)], "newer than the 1.x lepton review reads"),
        ([str(tmp_path / "absent.json")], "not found"),
    ]:
        assert main(["review", str(head), "--no-checkov", *[x for a in args for x in ("--plan", a)]]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    assert main(["review", str(head), "--no-checkov", "--plan", str(plan), "--plan-from-state"]) == 2
    assert "not both" in capsys.readouterr().err


def test_without_a_base_synth_the_plan_prior_state_prices_the_base(pairs, tmp_path):
    _, head = pairs["node-count"]
    stack = read_stack_documents(head)[0]
    template = next(iter(stack.resources_of("aws_launch_template").values()))
    prior = {"root_module": {"resources": [
        {"address": ASG, "mode": "managed", "type": "aws_autoscaling_group", "name": ASG.split(".")[1],
         "values": {"desired_capacity": 1, "min_size": 1, "max_size": 1, "launch_template": [{"id": "lt-0abc", "version": "1"}]}},
        {"address": "aws_launch_template.GpuNodes_LaunchTemplate_0E1B1CE7", "mode": "managed", "type": "aws_launch_template",
         "name": "GpuNodes_LaunchTemplate_0E1B1CE7",
         "values": {"id": "lt-0abc", "instance_type": template["instance_type"],
                    "block_device_mappings": [{"device_name": "/dev/sda1", "ebs": [{"volume_size": 100, "volume_type": "gp3"}]}]}}]}}
    doc = {**plan_doc([rc(ASG, ["update"], {"desired_capacity": 1}, {"desired_capacity": 3})],
                      {a: [] for a in stack.resource_bodies()}), "prior_state": {"values": prior}}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(doc))
    review = build_review(head, plans=[str(plan)], checkov=False)
    aws = stack_of(review)
    assert aws.cost_base.source == "state"
    node_month = HOURS_PER_MONTH * price("instance", "g5.xlarge", "on-demand") + 100 * price("disk", "gp3")
    assert aws.cost_base.total() == pytest.approx(node_month)
    assert "base priced from the plan" in render_markdown(review)


# -- traffic steps (issue 14) ------------------------------------------------------------------------------------------

def _doc(tmp_path: Path, name: str, resources: dict) -> StackDocument:
    path = tmp_path / name / "stacks" / "cutover" / "cdk.tf.json"
    path.parent.mkdir(parents=True)
    doc = {"provider": {"aws": [{"region": "us-east-1"}]}, "resource": resources}
    path.write_text(json.dumps(doc))
    return StackDocument("cutover", path, doc)


def route53(weights: dict[str, int], ttl: int = 60) -> dict:
    return {"aws_route53_record": {f"Split_{sid}": {
        "zone_id": "${aws_route53_zone.Zone.zone_id}", "name": "model.example.com", "type": "CNAME", "ttl": ttl,
        "records": [f"{sid}.endpoint.example.com"], "set_identifier": sid, "weighted_routing_policy": {"weight": w},
        "health_check_id": f"${{aws_route53_health_check.{sid}.id}}"} for sid, w in weights.items()}}


def test_a_route53_weight_change_alone_is_named_a_traffic_step(tmp_path):
    base = _doc(tmp_path, "base", route53({"old": 90, "new": 10}))
    head = _doc(tmp_path, "head", route53({"old": 50, "new": 50}))
    changes = static_changes(head, base)
    assert [c.action for c in changes.changes] == ["update", "update"]
    (step,) = changes.traffic_steps
    assert step.describe() == "traffic step: `new` 10% -> 50%, `old` 90% -> 50%"
    review = build_review(head.path.parents[2], base=base.path.parents[2], checkov=False)
    text = render_markdown(review)
    assert "**Traffic step** in `cutover` (`model.example.com CNAME`): `new` 10% -> 50%, `old` 90% -> 50%." in text
    assert "| `cutover` | traffic step |" in text
    # only the new endpoint's weight changes (old stays 90): its share still moves, and so does the old one's
    one = static_changes(_doc(tmp_path, "one", route53({"old": 90, "new": 30})), base)
    assert [c.traffic.describe() for c in one.changes] == ["traffic step: `new` 10% -> 25%, `old` 90% -> 75%"]
    # a weight change that comes with anything else is a plain update, not a step
    mixed = static_changes(_doc(tmp_path, "mixed", route53({"old": 50, "new": 50}, ttl=300)), base)
    assert not mixed.traffic_steps and all(c.traffic is None for c in mixed.changes)


def test_a_cloud_dns_weighted_round_robin_change_is_a_traffic_step_in_synth_and_in_a_plan(tmp_path):
    def record(old: float, new: float) -> dict:
        return {"google_dns_record_set": {"Split": {
            "managed_zone": "zone", "name": "model.example.com.", "type": "A", "ttl": 60,
            "routing_policy": {"wrr": [{"weight": old, "rrdatas": ["10.0.0.1"]}, {"weight": new, "rrdatas": ["10.0.0.2"]}]}}}}

    changes = static_changes(_doc(tmp_path, "head", record(0.5, 0.5)), _doc(tmp_path, "base", record(0.9, 0.1)))
    (step,) = changes.traffic_steps
    assert step.describe() == "traffic step: `10.0.0.2` 10% -> 50%, `10.0.0.1` 90% -> 50%"
    def values(old: float, new: float) -> dict:
        return {"name": "model.example.com.", "type": "A",
                "routing_policy": [{"wrr": [{"weight": old, "rrdatas": ["10.0.0.1"]}, {"weight": new, "rrdatas": ["10.0.0.2"]}]}]}

    before, after = values(0.9, 0.1), values(0.0, 1.0)
    planned = plan_changes(parse_plan(plan_doc([rc("google_dns_record_set.Split", ["update"], before, after)],
                                               {"google_dns_record_set.Split": ["routing_policy", "name", "type"]}), "p.json"))
    (step,) = planned.traffic_steps
    assert step.describe() == "traffic step: `10.0.0.2` 10% -> 100%, `10.0.0.1` 90% -> 0%"


def test_a_route53_step_in_a_plan_json(tmp_path):
    def rec(sid: str, w: int) -> dict:
        return {"name": "model.example.com", "type": "CNAME", "zone_id": "Z1", "set_identifier": sid,
                "weighted_routing_policy": [{"weight": w}], "records": [f"{sid}.example.com"]}

    doc = plan_doc([rc("aws_route53_record.New", ["update"], rec("new", 10), rec("new", 50)),
                    rc("aws_route53_record.Old", ["no-op"], rec("old", 90), rec("old", 90))],
                   {"aws_route53_record.New": ["weighted_routing_policy"], "aws_route53_record.Old": ["weighted_routing_policy"]})
    changes = plan_changes(parse_plan(doc, "p.json"))
    (step,) = changes.traffic_steps
    assert step.describe() == "traffic step: `new` 10% -> 35.71%, `old` 90% -> 64.29%"


# -- budget guardrails ----------------------------------------------------------------------------------------------------

def test_budget_guardrails_exit_non_zero_naming_the_figure(pairs, capsys):
    base, head = pairs["node-count"]
    review = static_review(pairs, "node-count")
    before, after = review.total("base"), review.total("head")
    pct = (after - before) / before * 100
    args = ["review", str(head), "--base", str(base), "--no-checkov"]
    assert main([*args, "--fail-above-monthly", str(after + 1), "--fail-on-increase-percent", str(pct + 1)]) == 0
    out = capsys.readouterr()
    assert "- passed: head monthly cost" in out.out and out.err == ""
    assert main([*args, "--fail-above-monthly", str(round(after - 1))]) == 3
    out = capsys.readouterr()
    assert "**FAILED**" in out.out  # the comment is still printed, saying so
    (line,) = out.err.strip().splitlines()
    assert f"${after:,.2f}" in line and "--fail-above-monthly" in line
    assert main([*args, "--fail-on-increase-percent", "10"]) == 3
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{pct:+.1f}%" in line and "--fail-on-increase-percent 10%" in line
    for bad in ("nan", "inf", "-5", "lots"):
        assert main([*args, "--fail-above-monthly", bad]) == 2
        assert "--fail-above-monthly" in capsys.readouterr().err
    assert main(["review", str(head), "--no-checkov", "--fail-on-increase-percent", "5"]) == 2
    assert "needs a base cost" in capsys.readouterr().err


# -- --plan-from-state: when it cannot plan, it says why ------------------------------------------------------------------

def test_plan_from_state_says_why_it_cannot_plan_and_falls_back_to_the_static_diff(pairs, tmp_path, monkeypatch):
    base, head = pairs["node-count"]
    stack = read_stack_documents(head)[0]
    monkeypatch.setenv("LEPTON_TERRAFORM", str(tmp_path / "no-terraform"))
    assert "terraform is not on PATH" in why_no_plan(stack)
    fake = tmp_path / "terraform"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("LEPTON_TERRAFORM", str(fake))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert "no AWS credentials found" in why_no_plan(stack)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    assert "no state at" in why_no_plan(stack)  # the local backend's state file does not exist: nothing deployed
    emulated = synth_stack(tmp_path / "emulated", fixed_manifest(tmp_path / "model"),
                           settings={"LEPTON_AWS_ENDPOINT": "http://127.0.0.1:9", "LEPTON_STATE_DIR": str(tmp_path / "state")})
    assert "the emulator the provider points at (http://127.0.0.1:9) does not answer" in why_no_plan(read_stack_documents(emulated)[0])

    review = build_review(head, base=base, plan_from_state=True, checkov=False)
    aws = stack_of(review)
    assert aws.changes.source == "static" and "no state at" in aws.no_plan_reason
    assert f"> - `{STACK}`: no plan: no state at" in render_markdown(review)


# -- golden comments ------------------------------------------------------------------------------------------------------

def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; run with LEPTON_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), f"the rendered comment differs from {path}; if the change is intended, re-run with LEPTON_UPDATE_GOLDEN=1"


@pytest.fixture
def in_folder(tmp_path, monkeypatch) -> Path:
    """Run from ``tmp_path`` so the comment names relative folders, as in CI."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_golden_bucket_rename_with_a_terraform_plan(in_folder):
    # the plan is a real one from moto (tests/integration/test_review_plan.py checks it still is), without moto's drift
    manifest = fixed_manifest(Path("model"))
    synth_pair(Path("."), "bucket-rename", manifest, base_settings=EMULATOR_SETTINGS)
    # the golden is about what the review renders, not the policy Aspect's wording: leave its report out
    Path("bucket-rename", "lepton-policy-report.json").unlink()
    shutil.copy(GOLDEN / "bucket-rename.plan.json", "plan.json")
    text = render_markdown(build_review(Path("bucket-rename"), base=Path("base"), plans=[f"{STACK}=plan.json"], checkov=False))
    assert "Static diff" not in text and "(bucket) is **replaced" in text
    _golden("bucket-rename.md", text)


def test_golden_node_count_static_diff(in_folder):
    manifest = fixed_manifest(Path("model"))
    synth_pair(Path("."), "node-count", manifest)
    Path("node-count", "lepton-policy-report.json").unlink()
    _golden("node-count.md", render_markdown(build_review(Path("node-count"), base=Path("base"), checkov=False)))


def test_json_carries_the_changes_costs_coverage_and_budget(pairs):
    review = static_review(pairs, "node-count", fail_above_monthly=1e9)
    doc = review_to_dict(review)
    (stack,) = doc["stacks"]
    assert stack["changes"]["source"] == "static" and stack["changes"]["counts"]["update"] == 1
    assert stack["changes"]["resources"][0]["attributes"][0] == {"path": "desired_capacity", "before": "1", "after": "3",
                                                                 "forces_replacement": False}
    head = stack["cost"]["head"]
    assert sum(head["coverage"].values()) == len(head["resources"]) and head["monthly_usd"]["on-demand"] > 0
    assert doc["totals_monthly_usd"]["head"]["on-demand"] == pytest.approx(review.total("head"), abs=1e-3)
    assert doc["budget"][0]["passed"] is True and doc["usage_assumptions"]["bucket_class_a_requests"] > 0
    with pytest.raises(ReviewError, match="needs the base cost"):
        build_review(pairs["node-count"][1], checkov=False, fail_on_increase_percent=5)


def test_the_pr_workflow_plans_from_state_and_spots_the_static_diff_fallback_in_the_comment(pairs):
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((REPO_ROOT / "examples" / "github-actions" / "lepton-review.yml").read_text())
    steps = workflow["jobs"]["review"]["steps"]
    (review,) = [s for s in steps if s.get("id") == "review"]
    assert "--plan-from-state" in review["run"] and "--base" in review["run"] and "--save-plans" in review["run"]
    # the notice the job prints when it fell back is found with the comment's own banner
    (pattern,) = re.findall(r"grep -q '([^']+)'", review["run"])
    assert re.search(pattern, render_markdown(static_review(pairs, "node-count")), re.M)  # grep's BRE and re agree on it
    budget = [s for s in steps if "status == '3'" in str(s.get("if", ""))]
    assert budget and "exit 3" in budget[0]["run"]  # the comment is posted first, then the guardrail fails the job

