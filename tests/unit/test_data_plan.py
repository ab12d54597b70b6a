"""`lepton data plan`: filters, modes, the data-plan contract, egress pricing and the DataTransferJob advice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lepton_cdk.contract import data_plan_from_dict
from model_pipeline.storage import LocalStore, StoreConfigError, open_store, parse_store_uri
from model_pipeline.sync import (
    KeyFilter,
    MigrationPlan,
    PlanItem,
    SyncError,
    build_plan,
    native_transfer_recommendation,
    plan_to_contract,
)
from tests.support.trees import write_tree

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def src(tmp_path) -> Path:
    return write_tree(tmp_path / "src", {
        "tables/a.csv": b"x,y\n1,2\n", "tables/b.csv": b"x,y\n3,4\n5,6\n", "images/cat 1.png": b"\x89PNG" * 10,
        "logs/2024/run.log": b"log line\n", "zero": b"", "résumé.txt": "é".encode(),
    })


@pytest.mark.parametrize(("include", "exclude", "expected"), [
    ((), (), {"tables/a.csv", "tables/b.csv", "images/cat 1.png", "logs/2024/run.log", "zero", "résumé.txt"}),
    (("tables/",), (), {"tables/a.csv", "tables/b.csv"}),
    (("*.csv",), (), set()),  # * does not cross folders
    (("**/*.csv",), (), {"tables/a.csv", "tables/b.csv"}),
    (("**",), ("logs/**", "*.txt"), {"tables/a.csv", "tables/b.csv", "images/cat 1.png", "zero"}),
    (("tables/[ab].csv",), ("tables/b*",), {"tables/a.csv"}),
    (("images/cat ?.png",), (), {"images/cat 1.png"}),
])
def test_include_and_exclude_globs_select_keys(src, include, exclude, expected):
    keys = [o.key for o in LocalStore(src).list()]
    assert {k for k in keys if KeyFilter(include, exclude).selects(k)} == expected


def test_an_unclosed_bracket_is_rejected_before_anything_is_listed(src, tmp_path):
    with pytest.raises(SyncError, match="unclosed"):
        build_plan(LocalStore(src), LocalStore(tmp_path / "dst"), include=("tables/[ab.csv",))


def test_incremental_plan_copies_new_and_changed_and_skips_identical(src, tmp_path):
    dst = write_tree(tmp_path / "dst", {"tables/a.csv": b"x,y\n1,2\n", "tables/b.csv": b"x,y\n3,4\n5,7\n", "old.bin": b"old"})
    plan = build_plan(LocalStore(src), LocalStore(dst), mode="incremental")
    by_key = {i.key: i for i in plan.items}
    assert by_key["tables/a.csv"].action == "skip"  # same bytes: hashed locally, no journal needed
    assert by_key["tables/b.csv"].action == "copy" and "changed" in by_key["tables/b.csv"].reason
    assert by_key["zero"].action == "copy" and by_key["zero"].reason == "new"
    assert "old.bin" not in by_key  # incremental never deletes
    totals = plan.totals()
    assert totals["objects_copy"] == 5 and totals["objects_skip"] == 1 and totals["objects_delete"] == 0


def test_full_plan_copies_everything_and_deletes_only_with_delete(src, tmp_path):
    dst = write_tree(tmp_path / "dst", {"tables/a.csv": b"x,y\n1,2\n", "old.bin": b"old", "logs/keep.log": b"k"})
    plan = build_plan(LocalStore(src), LocalStore(dst), mode="full")
    assert {i.action for i in plan.items} == {"copy"} and len(plan.items) == 6
    plan = build_plan(LocalStore(src), LocalStore(dst), mode="full", delete=True, exclude=("logs/**",))
    assert [(i.key, i.size) for i in plan.of("delete")] == [("old.bin", 3)]  # excluded keys are never deleted


def test_partial_needs_a_filter_and_delete_needs_full(src, tmp_path):
    with pytest.raises(SyncError, match="--mode partial needs"):
        build_plan(LocalStore(src), LocalStore(tmp_path / "d"), mode="partial")
    with pytest.raises(SyncError, match="--delete needs --mode full"):
        build_plan(LocalStore(src), LocalStore(tmp_path / "d"), mode="incremental", delete=True)
    with pytest.raises(SyncError, match="same location"):
        build_plan(LocalStore(src), LocalStore(src))
    plan = build_plan(LocalStore(src), LocalStore(tmp_path / "d"), mode="partial", include=("tables/",))
    assert sorted(i.key for i in plan.of("copy")) == ["tables/a.csv", "tables/b.csv"]


def test_the_plan_is_a_valid_data_plan_contract_that_review_can_read(src, tmp_path):
    plan = build_plan(LocalStore(src), LocalStore(tmp_path / "dst"), mode="full")
    doc = json.loads(json.dumps(plan_to_contract(plan)))
    parsed = data_plan_from_dict(doc)
    assert parsed.mode == "full" and parsed.source.cloud == "local"
    assert parsed.objects_to_copy == 6 and parsed.bytes_to_copy == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert doc["estimated_egress_usd"] == 0.0  # from a local disk: ingress is free
    assert [i["key"] for i in doc["items"]][:1] == ["images/cat 1.png"]  # largest first


class _CloudLikeStore(LocalStore):
    """A local folder that reports a cloud and region, to price a plan offline."""

    def __init__(self, root, cloud, region):
        super().__init__(root)
        self.cloud, self._r = cloud, region
        self.bucket, self.prefix = root.name, "data/"

    def region(self):
        return self._r


def _plan_with(size: int, objects: int = 1, **kw) -> MigrationPlan:
    src = _CloudLikeStore(Path("/nonexistent/src-bucket"), "aws", "us-east-1")
    dst = _CloudLikeStore(Path("/nonexistent/dst-bucket"), "gcp", "us")
    plan = MigrationPlan(src, dst, kw.get("mode", "partial"), KeyFilter(kw.get("include", ()), kw.get("exclude", ())),
                         kw.get("delete", False), None, source_region="us-east-1", destination_region="us")
    plan.items = [PlanItem("copy", f"k{i}", f"k{i}", size // objects, "new") for i in range(objects)]
    return plan


def test_egress_is_priced_from_the_catalog_for_the_source_cloud():
    doc = plan_to_contract(_plan_with(200 * 2**30))
    # AWS us-east-1 internet egress, first tier $0.09/GB (prices.csv): 200 GB -> $18
    assert doc["estimated_egress_usd"] == pytest.approx(18.0)
    assert "aws us-east-1 -> gcp us-central1" in doc["egress_cost_detail"]
    assert doc["estimated_seconds"] > 2000  # 200 GiB at the assumed 100 MiB/s


def test_above_the_threshold_the_plan_recommends_the_native_transfer_construct_with_its_settings(monkeypatch):
    small = native_transfer_recommendation(_plan_with(10 * 2**30, include=("tables/**",)))
    assert small["recommended"] is False and small["construct"] == "lepton_cdk.gcp.DataTransferJob"
    big = native_transfer_recommendation(_plan_with(3 * 2**40, include=("tables/**",), exclude=("tables/tmp*",)))
    assert big["recommended"] is True
    assert {k: big["settings"][k] for k in ("source_bucket_name", "source_prefix", "destination", "mode",
                                            "include_prefixes", "exclude_prefixes", "delete_unique_in_sink")} == {
        "source_bucket_name": "src-bucket", "source_prefix": "data/", "destination": "dst-bucket", "mode": "partial",
        "include_prefixes": ["tables/"], "exclude_prefixes": ["tables/tmp"], "delete_unique_in_sink": False}
    assert "cut at their first wildcard" in big["note"]  # tables/tmp* is not a plain prefix
    import model_pipeline.sync.plan as plan_module

    monkeypatch.setattr(plan_module, "NATIVE_TRANSFER_THRESHOLD_OBJECTS", 1000)  # a million items takes seconds to build
    assert native_transfer_recommendation(_plan_with(2**30, objects=999))["recommended"] is False
    assert native_transfer_recommendation(_plan_with(2**30, objects=1000))["recommended"] is True


@pytest.mark.parametrize(("uri", "message"), [
    ("", "empty location"),
    ("ftp://host/x", "unsupported scheme 'ftp'"),
    ("s3://", "names no bucket"),
    ("s3://Upper_Case/x", "not a valid bucket name"),
    ("gs://a/x", "not a valid bucket name"),
    ("s3://good-bucket/a/../b", "'.' or '..' segments"),
    ("file://relative/path", "absolute path"),
])
def test_bad_uris_get_one_clear_line(uri, message):
    with pytest.raises(StoreConfigError, match=message):
        open_store(uri)


def test_uris_parse_to_bucket_and_folder_prefix():
    assert parse_store_uri("s3://my-bucket/data/raw").prefix == "data/raw/"
    assert parse_store_uri("gs://my-bucket").prefix == ""
    assert parse_store_uri("file:///tmp/x%20y").bucket == "/tmp/x y"
    assert parse_store_uri("/tmp/data").scheme == "file"


def test_cli_plan_json_and_a_bad_uri_exit(src, tmp_path):
    env = {**os.environ, "CI": "true", "XDG_STATE_HOME": str(tmp_path / "state")}
    run = lambda *a: subprocess.run([sys.executable, "-m", "lepton_cdk.cli", "data", *a], cwd=REPO, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    proc = run("plan", str(src), str(tmp_path / "dst"), "--mode", "partial", "--include", "tables/", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["objects_to_copy"] == 2 and doc["mode"] == "partial"
    assert not (tmp_path / "dst").exists()  # planning writes nothing
    proc = run("plan", str(src), "s3://Bad_Bucket/x")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: 's3://Bad_Bucket/x': 'Bad_Bucket' is not a valid bucket name")


def test_the_engine_fields_are_typed_in_the_contract(src, tmp_path):
    from lepton_cdk.contract import ContractError

    doc = plan_to_contract(build_plan(LocalStore(src), LocalStore(tmp_path / "dst")))
    with pytest.raises(ContractError, match="estimated_egress_usd"):
        data_plan_from_dict({**doc, "estimated_egress_usd": -1})
    with pytest.raises(ContractError, match="action"):
        data_plan_from_dict({**doc, "items": [{"action": "move", "key": "a", "bytes": 1}]})


def test_review_reads_the_plan_file_and_carries_its_egress_to_infracost(src, tmp_path):
    import yaml

    from lepton_cdk.contract import read_data_plan
    from lepton_cdk.review import infracost_usage_yaml

    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_to_contract(_plan_with(5 * 2**30))))
    plan = read_data_plan(path)  # what `lepton review --data-plan` calls
    assert plan.bytes_to_copy == 5 * 2**30 and plan.source.cloud == "aws"
    usage = yaml.safe_load(infracost_usage_yaml(plan))["resource_usage"]
    assert usage["aws_data_transfer.us-east-1"]["monthly_outbound_internet_gb"] == 5.0
