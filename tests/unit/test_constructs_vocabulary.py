"""One vocabulary across clouds: docs/vocabulary.md holds against both packages, old names fail in one line naming the
new ones, the node groups' shared defaults agree, cloud checks go through typed Protocols, and aws/ and gcp/ never
import each other."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest

from lepton_cdk import aws as lepton_aws
from lepton_cdk import gcp as lepton_gcp
from lepton_cdk.core import ConstructValidationError, framework
from lepton_cdk.core.framework import App, TerraformStack, aws, google
from lepton_cdk.core.gpu_nodes import DEFAULT_HEALTH_CHECK_GRACE_PERIOD_SEC
from lepton_cdk.core.interfaces import IBucket, is_bucket_of
from lepton_cdk.patterns import GcsSource, MigrationTarget, S3Source
from tests.support.manifests import write_fake_manifest
from tests.support.synth import only, synth_json

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "vocabulary.md"
PACKAGES = {"aws": lepton_aws, "gcp": lepton_gcp}
AGENT = "arn:aws:datasync:us-east-1:123456789012:agent/agent-0123456789abcdef0"
ROLE = "arn:aws:iam::123456789012:role/lepton-transfer"
KEYS = {"aws": "arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-0b0a-0908-0706-050403020100",
        "gcp": "projects/acme/locations/us/keyRings/r/cryptoKeys/k"}


def doc_table(title: str) -> list[list[str]]:
    """The rows (cells without backticks) of the first table under ``## title`` in docs/vocabulary.md."""
    section = DOC.read_text(encoding="utf-8").split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")] for row in rows[2:]]  # past the header and rule


RENAMES = doc_table("Renamed in 0.2.0")
SHARED = doc_table("Shared names")


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    return write_fake_manifest(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def built(manifest_path, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """{cloud: {construct name: an instance}}: a full MigrationTarget per cloud plus an imported bucket (not synthesized)."""
    # cdktf creates the outdir (and stages assets) at construction: never let it default to the working directory
    app = App(outdir=str(tmp_path_factory.mktemp("vocabulary") / "cdktf.out"))
    out: dict[str, dict[str, Any]] = {}
    for cloud, source in (("aws", GcsSource(bucket="acme-raw", hmac_secret_id="lepton/gcs-hmac", agent_arns=[AGENT])),
                          ("gcp", S3Source(bucket="acme-raw", role_arn=ROLE))):
        stack = TerraformStack(app, cloud)
        target = MigrationTarget(stack, "Default", cloud=cloud, manifest=manifest_path, source=source, alert_emails=["oncall@acme.io"])
        out[cloud] = {
            "ModelBucket": target.bucket, "AccessLogBucket": target.bucket.access_log_bucket, "ModelArtifacts": target.artifacts,
            "ImportedModelBucket": PACKAGES[cloud].ModelBucket.from_bucket_name(stack, "Existing", "acme-models", kms_key_id=KEYS[cloud]),
            "GpuNodeGroup": target.nodes, "ModelServing": target.serving, "DataTransferJob": target.transfer,
            "Monitoring": target.monitoring, "PrivateNetwork": target.nodes.network,
            "TrafficSplit": PACKAGES[cloud].TrafficSplit(stack, "Split", zone="Z0123456789ABCDEFGHIJ" if cloud == "aws" else "models",
                                                         record_name="model.example.com", old_endpoint="http://old.example.com",
                                                         new_endpoint=target.serving, new_weight_percent=10),
        }
    return out


# -- the docs' tables against the code ---------------------------------------------------------------------------


def test_the_shared_names_table_is_read_whole():
    # a parsing slip would otherwise let the next test pass over an empty table
    assert len(SHARED) >= 60 and all(len(row) == 6 for row in SHARED)
    assert {row[2] for row in SHARED} == {"prop", "attribute", "method"}
    assert len(RENAMES) >= 20 and all(len(row) == 4 for row in RENAMES)


@pytest.mark.parametrize("construct, name, kind", [tuple(row[:3]) for row in SHARED], ids=lambda v: str(v))
def test_every_shared_name_in_the_docs_exists_on_both_clouds(built, construct, name, kind):
    for cloud, package in PACKAGES.items():
        if kind == "prop":
            cls_name, _, method = construct.partition(".")
            target = getattr(getattr(package, cls_name), method or "__init__")
            assert name in inspect.signature(target).parameters, f"{cloud}.{construct} has no prop {name}"
        else:
            instance = built[cloud][construct]
            assert hasattr(instance, name), f"{cloud}.{construct} has no {kind} {name}"
            assert callable(getattr(instance, name)) == (kind == "method"), f"{cloud}.{construct}.{name} is not a {kind}"


# -- renamed names ---------------------------------------------------------------------------------------------------

# A valid value for each new name, per cloud: passed under the old name it must fail, under the new one it must build.
VALUES = {
    ("aws", "kms_key_id"): KEYS["aws"], ("gcp", "kms_key_id"): KEYS["gcp"],
    ("aws", "image"): "ami-0123456789abcdef0", ("gcp", "image"): "projects/acme/global/images/gpu",
    ("aws", "instance_type"): "g6.xlarge", ("gcp", "instance_type"): "n1-standard-8",
    ("aws", "disk_size_gib"): 200, ("gcp", "disk_size_gib"): 200, ("aws", "node_count"): 1, ("gcp", "node_count"): 2,
    ("aws", "health_check_grace_period_sec"): 600, ("gcp", "health_check_grace_period_sec"): 600,
    ("aws", "alarm_window_min"): 3, ("gcp", "alarm_window_min"): 3, ("aws", "retain_on_destroy"): False,
    ("gcp", "cidr_block"): "10.8.0.0/20",
}


def _factory(where: str, stack: TerraformStack, manifest_path: Path):
    """(cloud, a callable taking (id, **props)) for a row's ``where``, with every other required prop given."""
    if where == "MigrationTarget":
        return "aws", lambda id, **kw: MigrationTarget(stack, id, cloud="aws", manifest=manifest_path, **kw)
    cloud, _, path = where.partition(".")
    package = PACKAGES[cloud]
    cls_name, _, method = path.partition(".")
    if method == "from_bucket_name":
        return cloud, lambda id, **kw: package.ModelBucket.from_bucket_name(stack, id, "acme-models", **kw)
    cls = getattr(package, cls_name)
    required: dict[str, Any] = {}
    if cls_name == "ImportedModelBucket":
        required = {"bucket_name": "acme-models"}
    elif cls_name in ("GpuNodeGroup", "Monitoring", "DataTransferJob"):
        bucket = package.ModelBucket(stack, "Bucket")
        if cls_name == "GpuNodeGroup":
            required = {"model": bucket.upload_artifacts(manifest_path)}
        elif cls_name == "Monitoring":
            nodes = package.GpuNodeGroup(stack, "Nodes", model=bucket.upload_artifacts(manifest_path))
            required = {"node_group": nodes, **({"notification_emails": ["oncall@acme.io"]} if cloud == "gcp" else {})}
        else:
            required = {"source_bucket_name": "acme-raw", "source_role_arn": ROLE, "destination": bucket}
    return cloud, lambda id, **kw: cls(stack, id, **required, **kw)


@pytest.mark.parametrize("where, old, new", [tuple(row[:3]) for row in RENAMES if row[3] == "prop"], ids=lambda v: str(v))
def test_an_old_prop_name_fails_in_one_line_naming_the_new_one_before_anything_is_built(manifest_path, where, old, new):
    stack = TerraformStack(framework.Testing.app(), "test")
    cloud, build = _factory(where, stack, manifest_path)
    value = VALUES[(cloud, new)]
    with pytest.raises(ConstructValidationError) as err:
        build("Old", **{old: value})
    message = str(err.value)
    assert "\n" not in message and err.value.construct_path == "test/Old"
    assert f"{old} was renamed {new} in 0.2.0; pass {new}=... instead" in message
    assert stack.node.try_find_child("Old") is None, "nothing may be built under an old prop name"
    build("New", **{new: value})
    assert stack.node.try_find_child("New") is not None


@pytest.mark.parametrize("where, old, new", [tuple(row[:3]) for row in RENAMES if row[3] == "attribute"], ids=lambda v: str(v))
def test_an_old_attribute_name_raises_an_attribute_error_naming_the_new_one(built, where, old, new):
    cloud, _, construct = where.partition(".")
    instance = built[cloud][construct]
    with pytest.raises(AttributeError, match=rf"{construct}\.{old} was renamed {new} in 0\.2\.0; use \.{new}"):
        getattr(instance, old)
    getattr(instance, new)  # the new name answers


def test_old_constant_names_are_gone_and_the_new_ones_match_across_clouds():
    import lepton_cdk.patterns as patterns

    assert not hasattr(lepton_gcp, "DEFAULT_MACHINE_TYPE") and not hasattr(lepton_gcp, "DEFAULT_SOURCE_IMAGE")
    assert patterns.DEFAULT_INSTANCE_TYPE == {"aws": lepton_aws.DEFAULT_INSTANCE_TYPE, "gcp": lepton_gcp.DEFAULT_INSTANCE_TYPE}


# -- defaults that must agree --------------------------------------------------------------------------------------


def test_both_node_groups_wait_the_same_grace_period_by_default(manifest_path):
    aws_doc, _ = synth_json(lambda s: lepton_aws.GpuNodeGroup(s, "Nodes", model=lepton_aws.ModelBucket(s, "B").upload_artifacts(manifest_path)),
                            provider=lambda s: aws.provider.AwsProvider(s, "aws", region="us-east-1"))
    gcp_doc, _ = synth_json(lambda s: lepton_gcp.GpuNodeGroup(s, "Nodes", model=lepton_gcp.ModelBucket(s, "B").upload_artifacts(manifest_path),
                                                              auto_healing=True),
                            provider=lambda s: google.provider.GoogleProvider(s, "google", project="lepton-demo", region="us-central1"))
    aws_grace = only(aws_doc, "aws_autoscaling_group")["health_check_grace_period"]
    gcp_grace = only(gcp_doc, "google_compute_region_instance_group_manager")["auto_healing_policies"]["initial_delay_sec"]
    assert aws_grace == gcp_grace == DEFAULT_HEALTH_CHECK_GRACE_PERIOD_SEC == 900


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_migration_target_hands_its_grace_period_to_the_nodes_instead_of_overriding_it(manifest_path, cloud):
    app = framework.Testing.app()
    stack = TerraformStack(app, cloud)
    if cloud == "aws":
        aws.provider.AwsProvider(stack, "aws", region="us-east-1")
    else:
        google.provider.GoogleProvider(stack, "google", project="lepton-demo", region="us-central1")
    MigrationTarget(stack, "Default", cloud=cloud, manifest=manifest_path, health_check_grace_period_sec=1200)
    doc = json.loads(framework.Testing.synth(stack, True))
    if cloud == "aws":
        assert only(doc, "aws_autoscaling_group")["health_check_grace_period"] == 1200
    else:
        assert only(doc, "google_compute_region_instance_group_manager")["auto_healing_policies"]["initial_delay_sec"] == 1200


# -- cloud checks are Protocols, not attribute guesses ------------------------------------------------------------


class OwnGcsBucket:
    """A user's own Cloud Storage bucket wrapper that happens to carry a ``bucket_arn`` (say, for a cross-cloud inventory)."""

    cloud = "gcp"
    bucket_name = "acme-own"
    bucket_arn = "arn:aws:s3:::not-this-one"

    def url_for_object(self, key: str = "") -> str:
        return f"gs://{self.bucket_name}/{key}"

    def grant_read(self, grantee: Any, *, key_prefix: str = "") -> Any: ...

    def grant_write(self, grantee: Any, *, key_prefix: str = "") -> Any: ...

    def upload_artifacts(self, manifest: Any, *, key_prefix: str | None = None) -> Any: ...


def test_a_bucket_says_its_cloud_and_a_stray_bucket_arn_no_longer_decides_it():
    stack = TerraformStack(framework.Testing.app(), "test")
    own = OwnGcsBucket()
    assert isinstance(own, IBucket) and is_bucket_of(own, "gcp") and not is_bucket_of(own, "aws")
    # The old check (`hasattr(destination, "bucket_arn")` means S3) refused this Cloud Storage bucket.
    job = lepton_gcp.DataTransferJob(stack, "FromS3", source_bucket_name="acme-raw", source_role_arn=ROLE, destination=own)
    assert job.destination is own
    with pytest.raises(ConstructValidationError, match="destination=OwnGcsBucket is not an S3 bucket"):
        lepton_aws.DataTransferJob(stack, "FromGcs", source_bucket_name="acme-raw", hmac_secret_id="s", agent_arns=[AGENT], destination=own)


def test_buckets_and_identities_of_the_other_cloud_are_refused_with_the_fix():
    stack = TerraformStack(framework.Testing.app(), "test")
    s3 = lepton_aws.ModelBucket.from_bucket_name(stack, "S3", "acme-s3")
    gcs = lepton_gcp.ModelBucket.from_bucket_name(stack, "Gcs", "acme-gcs")
    assert (s3.cloud, gcs.cloud) == ("aws", "gcp")
    with pytest.raises(ConstructValidationError, match="access_log_bucket=ImportedModelBucket is not an S3 bucket; pass a lepton_cdk.aws"):
        lepton_aws.ModelBucket(stack, "A", access_log_bucket=gcs)
    with pytest.raises(ConstructValidationError, match="access_log_bucket=ImportedModelBucket is not a Cloud Storage bucket"):
        lepton_gcp.ModelBucket(stack, "G", access_log_bucket=s3)
    with pytest.raises(ConstructValidationError, match="destination=ImportedModelBucket is not a Cloud Storage bucket"):
        lepton_gcp.DataTransferJob(stack, "FromS3", source_bucket_name="acme-raw", source_role_arn=ROLE, destination=s3)
    with pytest.raises(TypeError, match="grant_read needs a grantee with an IAM grant_principal"):
        s3.grant_read(lepton_gcp.ServiceAccount(stack, "Account"))
    with pytest.raises(TypeError, match="grant_write needs a grantee with a service account grant_principal"):
        gcs.grant_write(lepton_aws.ServiceRole(stack, "Role", service="ec2.amazonaws.com"))


def test_checking_an_imported_s3_bucket_declares_nothing():
    # Python 3.11's isinstance against a Protocol reads every property it names; the imported bucket's bucket_arn and
    # bucket_region declare data sources when first read, so a check that read them would change the JSON.
    doc, _ = synth_json(lambda s: lepton_aws.ModelBucket(s, "B", access_log_bucket=lepton_aws.ModelBucket.from_bucket_name(s, "Logs", "acme-logs")),
                        provider=lambda s: aws.provider.AwsProvider(s, "aws", region="us-east-1"))
    assert only(doc, "aws_s3_bucket_logging")["target_bucket"] == "acme-logs"
    assert not {"aws_partition", "aws_region"} & set(doc.get("data", {}))


# -- package boundaries ------------------------------------------------------------------------------------------------


def _imported_modules(path: Path, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            found.add(".".join(p for p in (base, node.module or "") if p))
            if node.module is None or node.level:  # `from .. import gcp` names the package in the alias
                found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("package, forbidden", [("aws", ("gcp",)), ("gcp", ("aws",)), ("core", ("aws", "gcp", "patterns"))])
def test_aws_and_gcp_never_import_each_other_and_core_imports_neither(package, forbidden):
    folder = REPO_ROOT / "lepton_cdk" / package
    files = sorted(folder.glob("*.py"))
    assert files
    for path in files:
        imported = _imported_modules(path, f"lepton_cdk.{package}")
        bad = {m for m in imported for f in forbidden if re.match(rf"^(lepton_cdk\.)?{f}(\.|$)", m)}
        assert not bad, f"{path.relative_to(REPO_ROOT)} imports {sorted(bad)}"
