"""The checkov baseline mechanism without running checkov: loading, matching, unexpected and stale entries.

The real scan of the reference stacks is tests/integration/test_reference_stacks.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lepton_cdk.checks.checkov_baseline import (
    BaselineEntry,
    BaselineError,
    CheckovError,
    CheckovFailure,
    check_stacks,
    compare,
    load_baseline,
    run_checkov,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
REASON = "the log bucket cannot use SSE-KMS because S3 log delivery cannot write to it"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "baseline.yaml"
    path.write_text(text)
    return path


def test_the_shipped_baseline_loads_and_every_entry_carries_a_reason():
    entries = load_baseline(REPO_ROOT / "tests" / "checkov-baseline.yaml")
    assert entries and all(len(e.reason) >= 20 and e.check.startswith("CKV") for e in entries)
    assert len({(e.check, e.resource, e.stacks) for e in entries}) == len(entries)


@pytest.mark.parametrize("body, message", [
    ("version: 1\naccepted:\n  - check: CKV_AWS_145\n    resource: aws_s3_bucket.*\n", "needs a reason of at least 20 characters"),
    ("version: 1\naccepted:\n  - check: CKV_AWS_145\n    resource: aws_s3_bucket.*\n    reason: accepted\n", "got 'accepted'"),
    (f"version: 1\naccepted:\n  - check: CKV_AWS_145\n    resource: x.*\n    reason: {REASON}\n    why: x\n", "unknown key(s) why"),
    (f"version: 1\naccepted:\n  - check: S3_BAD\n    resource: x.*\n    reason: {REASON}\n", "is not a checkov check id"),
    (f"version: 1\naccepted:\n  - check: CKV_AWS_145\n    resource: x.*\n    stacks: lepton-aws\n    reason: {REASON}\n", "must be a list"),
    ("version: 2\naccepted: []\n", "version: 1"),
    ("version: 1\naccepted: [\n", "is not valid YAML"),
])
def test_a_bad_baseline_is_refused_in_one_line_naming_the_entry(tmp_path, body, message):
    with pytest.raises(BaselineError) as err:
        load_baseline(_write(tmp_path, body))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_baseline_file_is_a_one_line_error(tmp_path):
    with pytest.raises(BaselineError, match="cannot read checkov baseline"):
        load_baseline(tmp_path / "nope.yaml")


def test_compare_accepts_matching_failures_and_reports_unexpected_and_stale_entries():
    log_bucket = BaselineEntry("CKV_AWS_145", "aws_s3_bucket.*AccessLogs*", REASON)
    only_gcp = BaselineEntry("CKV_AWS_144", "aws_s3_bucket.*", REASON, ("lepton-gcp",))
    never = BaselineEntry("CKV2_AWS_11", "aws_vpc.*", REASON)
    failures = [
        CheckovFailure("lepton-aws", "CKV_AWS_145", "KMS by default", "aws_s3_bucket.ModelBucket_AccessLogs_94B93479"),
        CheckovFailure("lepton-aws", "CKV_AWS_145", "KMS by default", "aws_s3_bucket.ModelBucket_B33D855B"),  # not the log bucket
        CheckovFailure("lepton-aws", "CKV_AWS_144", "replication", "aws_s3_bucket.ModelBucket_B33D855B"),  # entry is for another stack
    ]
    result = compare(failures, [log_bucket, only_gcp, never], stacks=["lepton-aws"], passed=10)
    assert result.unexpected == (failures[1], failures[2])
    assert result.stale == (only_gcp, never)
    assert result.accepted[str(log_bucket)] == [failures[0]]
    assert not result.ok
    text = result.summary()
    assert "not in the baseline: lepton-aws: CKV_AWS_145 aws_s3_bucket.ModelBucket_B33D855B" in text
    assert "stale baseline entry (matched nothing; remove it): CKV2_AWS_11 on aws_vpc.* in *" in text
    assert compare(failures[:1], [log_bucket]).ok


def test_checkov_resource_names_without_a_type_are_resolved_from_the_stack(tmp_path):
    # checkov reports some terraform_json resources as "resource.<logical id>"; a fake checkov shows the mapping.
    stack = tmp_path / "out" / "stacks" / "s1"
    stack.mkdir(parents=True)
    (stack / "cdk.tf.json").write_text(json.dumps({"resource": {"aws_vpc_security_group_egress_rule": {"Egress_1": {}}}}))
    report = {"summary": {"passed": 3, "failed": 1, "checkov_version": "9.9.9"}, "results": {"failed_checks": [
        {"check_id": "CKV_AWS_23", "check_name": "description", "resource": "resource.Egress_1", "file_path": "/stacks/s1/cdk.tf.json"}]}}
    fake = tmp_path / "checkov"
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(report)}\nEOF\n")
    fake.chmod(0o755)
    failures, passed, version = run_checkov([stack / "cdk.tf.json"], str(fake))
    assert failures == [CheckovFailure("s1", "CKV_AWS_23", "description", "aws_vpc_security_group_egress_rule.Egress_1")]
    assert (passed, version) == (3, "9.9.9")
    result = check_stacks(tmp_path / "out", [BaselineEntry("CKV_AWS_23", "aws_vpc_security_group_egress_rule.Egress_*", REASON)],
                          executable=str(fake))
    assert result.ok and result.stacks == ("s1",)


def test_no_stacks_or_a_broken_checkov_is_an_error_not_a_pass(tmp_path):
    with pytest.raises(CheckovError, match="no stacks/\\*/cdk.tf.json"):
        check_stacks(tmp_path, [], executable="/bin/true")
    stack = tmp_path / "stacks" / "s1"
    stack.mkdir(parents=True)
    (stack / "cdk.tf.json").write_text("{}")
    with pytest.raises(CheckovError, match="without a JSON report"):
        check_stacks(tmp_path, [], executable="/bin/false")


def test_a_baseline_of_nested_aliases_is_refused_in_one_line(tmp_path):
    # "billion laughs": nine levels of ten aliases each would expand to 10^9 values
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "baseline.yaml"
    path.write_text("\n".join(lines) + "\naccepted: []\n")
    with pytest.raises(BaselineError, match="expands to more than .* values through YAML aliases"):
        load_baseline(path)


def test_a_baseline_that_is_a_folder_is_one_clear_error(tmp_path):
    with pytest.raises(BaselineError, match="baseline"):
        load_baseline(tmp_path)
