"""Policy as an Aspect: each rule over fixtures, suppressions with reasons, the report, and synth failing on errors.

Rules are pure functions over synthesized config, so their fixtures are plain
dicts (no jsii). The Aspect tests share one process-wide jsii kernel; the
real stacks are synthesized once per module, and one subprocess checks that
``python -m infra`` fails in one line on an injected violation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lepton_cdk.app.config import InfraConfig
from lepton_cdk.checks import (
    COMPLIANT,
    LEPTON_CORE,
    NON_COMPLIANT,
    NOT_APPLICABLE,
    REPORT_FILENAME,
    RULES,
    PolicyViolationError,
    Resource,
    StackView,
    SuppressionError,
    check_reason,
    evaluate,
)
from lepton_cdk.review.policy import read_policy_report
from tests.support.manifests import write_fake_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
QUIET = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CHECKPOINT_DISABLE": "1"}

TLS_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": ["${aws_s3_bucket.b.arn}", "${aws_s3_bucket.b.arn}/*"],
    "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})


def _policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _res(rtype: str, config: dict, doc: dict | None = None, name: str = "b") -> Resource:
    doc = doc or {}
    doc.setdefault("resource", {}).setdefault(rtype, {}).setdefault(name, config)
    return Resource(rtype, name, f"test/{name}", config, StackView(doc))


def _bucket_with_policy(policy: str, *, target: str = "${aws_s3_bucket.b.id}") -> Resource:
    doc = {"resource": {"aws_s3_bucket_policy": {"p": {"bucket": target, "policy": policy}}}}
    return _res("aws_s3_bucket", {"bucket_prefix": "x"}, doc)


# (rule id, resource that fails it, resource that passes it)
CASES = {
    "LEP-S3-1": [
        (lambda: _res("aws_s3_bucket", {}), lambda: _bucket_with_policy(TLS_POLICY)),
        (lambda: _bucket_with_policy(TLS_POLICY, target="${aws_s3_bucket.other.id}"),
         lambda: _bucket_with_policy(TLS_POLICY, target="${aws_s3_bucket.b.bucket}")),
        (lambda: _bucket_with_policy(_policy({"Effect": "Allow", "Action": "s3:GetObject", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})),
         lambda: _res("aws_s3_bucket", {}, {
             "resource": {"aws_s3_bucket_policy": {"p": {"bucket": "${aws_s3_bucket.b.id}", "policy": "${data.aws_iam_policy_document.d.json}"}}},
             "data": {"aws_iam_policy_document": {"d": {"statement": [{"effect": "Deny", "actions": ["s3:*"], "condition": [
                 {"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}]}]}}}})),
    ],
    "LEP-GCS-1": [
        (lambda: _res("google_storage_bucket", {"name": "x"}),
         lambda: _res("google_storage_bucket", {"encryption": {"default_kms_key_name": "${google_kms_crypto_key.k.id}"}})),
    ],
    "LEP-SM-1": [
        (lambda: _res("aws_sagemaker_endpoint_configuration", {"production_variants": [{"instance_type": "ml.m5.large"}]}),
         lambda: _res("aws_sagemaker_endpoint_configuration", {"kms_key_arn": "${aws_kms_key.k.arn}",
                                                               "production_variants": [{"instance_type": "ml.m5.large"}]})),
    ],
    "LEP-RETAIN-1": [
        (lambda: _res("aws_s3_bucket", {}), lambda: _res("aws_s3_bucket", {"lifecycle": {"prevent_destroy": True}})),
        (lambda: _res("aws_kms_key", {"lifecycle": {"prevent_destroy": False}}), lambda: _res("aws_kms_key", {"lifecycle": {"prevent_destroy": True}})),
        (lambda: _res("google_storage_bucket", {}), lambda: _res("google_storage_bucket", {"lifecycle": {"prevent_destroy": True}})),
        (lambda: _res("google_kms_crypto_key", {}), lambda: _res("google_kms_crypto_key", {"lifecycle": {"prevent_destroy": True}})),
    ],
    "LEP-IAM-1": [
        (lambda: _res("aws_iam_role_policy", {"policy": _policy({"Effect": "Allow", "Action": "*", "Resource": "*"})}),
         lambda: _res("aws_iam_role_policy", {"policy": _policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})})),
        (lambda: _res("aws_iam_policy", {"policy": _policy({"Effect": "Allow", "Action": ["kms:Decrypt", "s3:*"], "Resource": "*"})}),
         lambda: _res("aws_iam_policy", {"policy": _policy({"Effect": "Deny", "Action": "s3:*", "Resource": "*"})})),
        (lambda: _res("aws_iam_role", {"inline_policy": [{"name": "i", "policy": _policy({"Effect": "Allow", "NotAction": "iam:*"})}]}),
         lambda: _res("aws_iam_role", {"inline_policy": [{"name": "i", "policy": _policy({"Effect": "Allow", "Action": "s3:Get*"})}]})),
        (lambda: _res("aws_iam_policy", {"policy": "${data.aws_iam_policy_document.d.json}"},
                      {"data": {"aws_iam_policy_document": {"d": {"statement": [{"actions": ["*"]}]}}}}),
         lambda: _res("aws_iam_policy", {"policy": "${data.aws_iam_policy_document.d.json}"},
                      {"data": {"aws_iam_policy_document": {"d": {"statement": [{"actions": ["s3:ListBucket"]}]}}}})),
    ],
    "LEP-IAM-2": [
        (lambda: _res("google_project_iam_member", {"role": "roles/editor", "member": "user:a@b.c"}),
         lambda: _res("google_project_iam_member", {"role": "roles/storage.objectViewer", "member": "user:a@b.c"})),
        (lambda: _res("google_project_iam_policy", {"policy_data": json.dumps({"bindings": [{"role": "roles/owner", "members": ["user:a"]}]})}),
         lambda: _res("google_project_iam_binding", {"role": "roles/logging.viewer", "members": ["user:a"]})),
    ],
    "LEP-NET-1": [
        (lambda: _res("aws_security_group", {"ingress": [{"from_port": 22, "to_port": 22, "protocol": "tcp", "cidr_blocks": ["0.0.0.0/0"]}]}),
         lambda: _res("aws_security_group", {"ingress": [{"from_port": 22, "to_port": 22, "protocol": "tcp", "cidr_blocks": ["10.0.0.0/8"]}],
                                             "egress": [{"cidr_blocks": ["0.0.0.0/0"]}]})),
        (lambda: _res("aws_vpc_security_group_ingress_rule", {"cidr_ipv6": "::/0", "ip_protocol": "-1"}),
         lambda: _res("aws_vpc_security_group_ingress_rule", {"referenced_security_group_id": "${aws_security_group.lb.id}"})),
        (lambda: _res("aws_security_group_rule", {"type": "ingress", "cidr_blocks": ["0.0.0.0/0"]}),
         lambda: _res("aws_security_group_rule", {"type": "ingress", "cidr_blocks": ["${var.office_cidr}"]})),
        (lambda: _res("google_compute_firewall", {"allow": [{"protocol": "tcp"}], "source_ranges": ["0.0.0.0/0"]}),
         lambda: _res("google_compute_firewall", {"allow": [{"protocol": "tcp"}], "source_ranges": ["35.191.0.0/16", "130.211.0.0/22"]})),
        (lambda: _res("google_compute_firewall", {"allow": [{"protocol": "tcp"}]}),
         lambda: _res("google_compute_firewall", {"allow": [{"protocol": "tcp"}], "source_tags": ["lb"]})),
    ],
}


def test_every_rule_in_the_default_pack_has_fixtures():
    assert sorted(CASES) == sorted(r.id for r in LEPTON_CORE.rules) == sorted(RULES)
    assert all(r.level in ("error", "warning") and r.name and r.explanation and r.fix for r in LEPTON_CORE.rules)


@pytest.mark.parametrize("rule_id, index", [(rid, i) for rid, cases in CASES.items() for i in range(len(cases))])
def test_rule_fails_its_bad_fixture_and_passes_its_good_one(rule_id, index):
    bad, good = CASES[rule_id][index]
    rule = RULES[rule_id]
    verdict, detail = rule.evaluate(bad())
    assert verdict is NON_COMPLIANT and detail
    assert rule.evaluate(good())[0] is COMPLIANT


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rules_do_not_apply_to_other_resource_types(rule_id):
    assert RULES[rule_id].evaluate(_res("aws_vpc", {"cidr_block": "0.0.0.0/0"}))[0] is NOT_APPLICABLE


def test_sagemaker_kms_is_not_applicable_where_sagemaker_refuses_a_key():
    nvme = _res("aws_sagemaker_endpoint_configuration", {"production_variants": [{"instance_type": "ml.g5.xlarge"}]})
    serverless = _res("aws_sagemaker_endpoint_configuration", {"production_variants": [{"serverless_config": [{"memory_size_in_mb": 2048}]}]})
    assert RULES["LEP-SM-1"].evaluate(nvme)[0] is NOT_APPLICABLE
    assert RULES["LEP-SM-1"].evaluate(serverless)[0] is NOT_APPLICABLE


def test_evaluate_reports_non_compliant_resources_with_path_address_and_suppressions():
    doc = {"resource": {"aws_kms_key": {
        "k": {"//": {"metadata": {"path": "s/Data/Key"}}},
        "ok": {"//": {"metadata": {"path": "s/Other/Key"}}, "lifecycle": {"prevent_destroy": True}}}}}
    [finding] = evaluate(doc, stack="s", pack=LEPTON_CORE)
    assert (finding.rule, finding.resource, finding.address, finding.failing) == ("LEP-RETAIN-1", "s/Data/Key", "aws_kms_key.k", True)
    assert "LEP-RETAIN-1" in finding.message and "Fix: " in finding.message
    [quiet] = evaluate(doc, stack="s", pack=LEPTON_CORE, suppressions=lambda p: {"LEP-RETAIN-1": "scratch key for tests"})
    assert quiet.suppressed and quiet.reason == "scratch key for tests" and not quiet.failing


@pytest.mark.parametrize("reason", ["", "   ", "because", None])
def test_a_suppression_without_a_real_reason_raises(reason):
    with pytest.raises(SuppressionError, match="needs a reason"):
        check_reason("LEP-NET-1", reason)


def test_suppressing_an_unknown_rule_raises():
    with pytest.raises(SuppressionError, match="unknown policy rule 'LEP-NOPE'"):
        check_reason("LEP-NOPE", "a perfectly good reason")


# -- the Aspect, in-process ------------------------------------------------------------------------------------


def _open_sg_app(outdir: Path, *, reason: str | None):
    """An app whose one stack has a security group open to the world; returns (app, synth's findings or error)."""
    from lepton_cdk.checks.aspect import PolicyChecks
    from lepton_cdk.core.framework import App, Construct, TerraformStack, aws

    app = App(outdir=str(outdir))
    stack = TerraformStack(app, "policy-test")
    aws.provider.AwsProvider(stack, "aws", region="us-east-1")
    PolicyChecks.apply(stack)
    web = Construct(stack, "Web")
    aws.security_group.SecurityGroup(web, "Open", name="open", ingress=[aws.security_group.SecurityGroupIngress(
        from_port=443, to_port=443, protocol="tcp", cidr_blocks=["0.0.0.0/0"])])
    if reason is not None:
        PolicyChecks.suppress(web, "LEP-NET-1", reason=reason)
    try:
        return app, PolicyChecks.synth(app)
    except PolicyViolationError as exc:
        return app, exc


def test_suppress_on_a_construct_raises_without_a_reason():
    from lepton_cdk.checks.aspect import PolicyChecks
    from lepton_cdk.core.framework import Testing

    with pytest.raises(SuppressionError):
        PolicyChecks.suppress(Testing.app(), "LEP-NET-1", reason="ok")


def test_an_unsuppressed_error_fails_synth_in_one_line_and_annotates_the_resource(tmp_path):
    from lepton_cdk.checks.aspect import PolicyChecks

    app, err = _open_sg_app(tmp_path, reason=None)
    assert isinstance(err, PolicyViolationError)
    line = str(err)
    assert "\n" not in line and "LEP-NET-1" in line and "policy-test/Web/Open" in line and "ingress from 0.0.0.0/0" in line
    assert "fix: allow only known CIDR ranges" in line and "PolicyChecks.suppress" in line
    # cdktf itself aborted synth on the Aspect's error annotation (as `cdktf synth` does), before writing the stack.
    assert 'Encountered Annotations with level "ERROR"' in str(err.__cause__) and "[policy-test/Web/Open] [LEP-NET-1]" in str(err.__cause__)
    assert not (tmp_path / "stacks" / "policy-test" / "cdk.tf.json").exists()
    with pytest.raises(PolicyViolationError):
        PolicyChecks.check(app)
    [finding] = read_policy_report(tmp_path)
    assert (finding.rule, finding.level, finding.suppressed) == ("LEP-NET-1", "error", False)


def test_a_suppressed_finding_is_reported_with_its_reason_and_does_not_fail_synth(tmp_path):

    reason = "public HTTPS entry point, fronted by a WAF (ticket SEC-42)"
    app, findings = _open_sg_app(tmp_path, reason=reason)
    [finding] = findings  # synth did not raise
    assert finding.suppressed and finding.reason == reason
    assert json.loads((tmp_path / "manifest.json").read_text())["stacks"]["policy-test"].get("annotations", []) == []
    [read] = read_policy_report(tmp_path)
    assert (read.rule, read.resource, read.suppressed, read.reason) == ("LEP-NET-1", "policy-test/Web/Open", True, reason)
    doc = json.loads((tmp_path / REPORT_FILENAME).read_text())
    assert doc["schema_version"] == "1.0.0" and set(doc["findings"][0]) >= {
        "stack", "rule", "level", "resource", "message", "suppressed", "reason"}


# -- the real stacks ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    return write_fake_manifest(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def real_stacks(manifest_path, tmp_path_factory):
    """Both clouds synthesized twice: default config, and the dev/test config (no retention, http emulator)."""
    from lepton_cdk.app.main import build_app
    from lepton_cdk.checks.aspect import PolicyChecks

    out = {}
    for label, config in {
        "default": InfraConfig(manifest_path=manifest_path, targets=("aws", "gcp")),
        "dev": InfraConfig(manifest_path=manifest_path, targets=("aws", "gcp"), retain_data=False, aws_endpoint="http://127.0.0.1:5000"),
    }.items():
        outdir = tmp_path_factory.mktemp(label)
        out[label] = (outdir, PolicyChecks.synth(build_app(config, outdir)))
    return out


def test_real_stacks_synthesize_with_no_unsuppressed_error_and_the_review_reads_the_report(real_stacks):
    outdir, findings = real_stacks["default"]
    assert [f for f in findings if f.failing] == []
    assert [f for f in findings if not f.suppressed] == []
    assert read_policy_report(outdir) == []
    stacks = {p.parent.name for p in (outdir / "stacks").glob("*/cdk.tf.json")}
    assert stacks == {"lepton-aws", "lepton-gcp"}


def test_retain_data_false_and_an_http_emulator_are_suppressed_with_reasons_not_skipped(real_stacks):
    outdir, findings = real_stacks["dev"]
    assert findings and not any(f.failing for f in findings)
    read = read_policy_report(outdir)
    assert {(f.stack, f.rule) for f in read} == {("lepton-aws", "LEP-RETAIN-1"), ("lepton-aws", "LEP-S3-1"), ("lepton-gcp", "LEP-RETAIN-1")}
    assert all(f.suppressed and len(f.reason) >= 10 for f in read)
    assert all("LEPTON_RETAIN_DATA=false" in f.reason for f in read if f.rule == "LEP-RETAIN-1")
    retained = {f.resource for f in read if f.rule == "LEP-RETAIN-1"}
    # the stacks' MigrationTarget is their "Default" child: in construct paths, not in logical ids
    assert {"lepton-aws/Default/ModelBucket/Resource", "lepton-aws/Default/ModelBucket/Key", "lepton-gcp/Default/ModelBucket/Resource",
            "lepton-gcp/Default/ModelBucket/Key"} <= retained


INJECT = """
import sys
from lepton_cdk.app.stacks import aws as stacks
from lepton_cdk.core.framework import aws

build = stacks.AwsTargetStack.__init__

def with_open_ssh(self, *args, **kwargs):
    build(self, *args, **kwargs)
    aws.security_group.SecurityGroup(self, "OpenSsh", ingress=[aws.security_group.SecurityGroupIngress(
        from_port=22, to_port=22, protocol="tcp", cidr_blocks=["0.0.0.0/0"])])

stacks.AwsTargetStack.__init__ = with_open_ssh
from lepton_cdk.app.main import main
sys.exit(main())
"""


def test_python_m_infra_exits_1_in_one_line_on_an_injected_violation(manifest_path, tmp_path):
    """``python -m infra``'s main() with one security group open to the world added to the AWS stack."""
    proc = subprocess.run([sys.executable, "-c", INJECT], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, check=False,
                          env={"PATH": "/usr/bin:/bin", **QUIET, "CDKTF_OUTDIR": str(tmp_path / "out"), "LEPTON_MANIFEST": str(manifest_path)})
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: policy LEP-NET-1 (No world-open ingress) failed for lepton-aws/OpenSsh (aws_security_group.")
    assert "ingress from 0.0.0.0/0" in lines[0] and "fix: " in lines[0]
    [finding] = read_policy_report(tmp_path / "out")
    assert (finding.rule, finding.resource, finding.suppressed) == ("LEP-NET-1", "lepton-aws/OpenSsh", False)
