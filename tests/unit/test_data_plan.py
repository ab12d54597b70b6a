"""`lepton data plan`: filters, modes, the data-plan contract, egress pricing and the DataTransferJob advice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lepton_cdk.contract import data_plan_from_dict
from lepton_cdk.data import (
    KeyFilter,
    MigrationPlan,
    PlanItem,
    SyncError,
    build_plan,
    native_transfer_recommendation,
    plan_to_contract,
)
from lepton_cdk.data.stores import LocalStore, StoreConfigError, open_store, parse_store_uri
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
    import lepton_cdk.data.plan as plan_module

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


# -- guards: deletions, overlapping locations, keys a folder cannot hold ------------------------------------------

@pytest.mark.parametrize(("text", "count", "share"), [("0", 0, None), ("25", 25, None), ("50%", None, 0.5),
                                                      ("100%", None, 1.0), ("12.5%", None, 0.125)])
def test_max_delete_takes_a_count_or_a_share(text, count, share):
    from lepton_cdk.data import parse_max_delete

    limit = parse_max_delete(text)
    assert (limit.count, limit.share, limit.explicit) == (count, share, True)


@pytest.mark.parametrize("text", ["", "abc", "-1", "101%", "-5%", "1.5", "nan%", "50 %%"])
def test_a_bad_max_delete_names_the_accepted_forms(text):
    from lepton_cdk.data import parse_max_delete

    with pytest.raises(SyncError, match=r"give a number of objects \(e.g. 100\) or a share"):
        parse_max_delete(text)


def _dst_with(tmp_path, n: int) -> Path:
    return write_tree(tmp_path / "dst", {f"old/{i}.bin": b"x" for i in range(n)})


def test_delete_refuses_an_empty_source_unless_the_limit_is_given(tmp_path):
    from lepton_cdk.data import parse_max_delete

    empty, dst = tmp_path / "empty", _dst_with(tmp_path, 3)
    empty.mkdir()
    plan = build_plan(LocalStore(empty), LocalStore(dst), mode="full", delete=True)
    assert "lists no objects, so all 3 objects" in plan.delete_refusal() and "--max-delete 3" in plan.delete_refusal()
    allowed = build_plan(LocalStore(empty), LocalStore(dst), mode="full", delete=True, max_delete=parse_max_delete("100%"))
    assert allowed.delete_refusal() is None and len(allowed.of("delete")) == 3


def test_delete_refuses_more_than_the_share_or_count_and_names_the_numbers(src, tmp_path):
    from lepton_cdk.data import parse_max_delete

    dst = _dst_with(tmp_path, 4)  # src shares none of these: all 4 would go
    refusal = build_plan(LocalStore(src), LocalStore(dst), mode="full", delete=True).delete_refusal()
    assert refusal.startswith("refusing --delete: it would delete 4 of the 4 objects") and "(--max-delete 100%)" in refusal
    by_count = build_plan(LocalStore(src), LocalStore(dst), mode="full", delete=True, max_delete=parse_max_delete("3"))
    assert "more than --max-delete 3" in by_count.delete_refusal()
    assert build_plan(LocalStore(src), LocalStore(dst), mode="full", delete=True,
                      max_delete=parse_max_delete("4")).delete_refusal() is None
    with pytest.raises(SyncError, match="--max-delete limits what --delete removes"):
        build_plan(LocalStore(src), LocalStore(dst), mode="full", max_delete=parse_max_delete("4"))


def test_deletions_come_first_in_the_plan_and_its_contract(src, tmp_path):
    dst = write_tree(tmp_path / "dst", {"zz-old.bin": b"old", **{f"keep{i}": b"k" for i in range(3)}})
    plan = build_plan(LocalStore(src), LocalStore(dst), mode="full", delete=True, max_delete=None, exclude=("keep*",))
    assert plan.items[0].action == "delete" and plan.items[0].key == "zz-old.bin"
    doc = json.loads(json.dumps(plan_to_contract(plan, item_limit=1)))
    assert doc["items"] == [{"action": "delete", "key": "zz-old.bin", "dest_key": "zz-old.bin", "bytes": 3,
                             "reason": "not in the source"}]
    assert doc["delete_refusal"] is None and doc["max_delete"] == "50%"
    data_plan_from_dict(doc)


@pytest.mark.parametrize(("inner", "message"), [
    ("dst-in-src", "the destination .* is inside the source"),
    ("src-in-dst", "the source .* is inside the destination"),
    ("alias", "the destination .* is inside the source"),
])
def test_a_destination_inside_the_source_or_the_reverse_is_refused(src, tmp_path, inner, message):
    (tmp_path / "alias").symlink_to(src)
    pairs = {"dst-in-src": (src, src / "backup"), "src-in-dst": (src / "tables", src), "alias": (src, tmp_path / "alias/x")}
    a, b = pairs[inner]
    with pytest.raises(SyncError, match=message):
        build_plan(LocalStore(a), LocalStore(b))
    assert not (src / "backup").exists() and not (src / "x").exists()


def test_prefixes_of_one_bucket_overlap_only_when_one_holds_the_other():
    from tests.support.memory_store import MemoryStore

    class Prefixed(MemoryStore):
        def location(self):
            bucket, _, prefix = self.uri.removeprefix("s3://").partition("/")
            return f"s3://{bucket}", prefix

    with pytest.raises(SyncError, match="inside the source"):
        build_plan(Prefixed({"a": b"1"}, "s3://b/data/"), Prefixed({}, "s3://b/data/copy/"))
    assert build_plan(Prefixed({"a": b"1"}, "s3://b/data/"), Prefixed({}, "s3://b/data2/")).of("copy")


def test_a_local_destination_lists_keys_it_cannot_hold_with_the_reason(tmp_path):
    from tests.support.memory_store import MemoryStore

    source = MemoryStore({"a": b"1", "a/b": b"2", "c/./d": b"3", "ok": b"4", "t.csv": b"x\n1\n", "t.parquet": b"PAR1"})
    dst = write_tree(tmp_path / "dst", {"ok/inside": b"existing", "file": b"f"})
    source.objects["file/under"] = b"5"
    plan = build_plan(source, LocalStore(dst), transcode="parquet")
    reasons = dict(plan.unwritable)
    assert sorted(reasons) == ["a", "c/./d", "file/under", "ok", "t.csv"]
    assert "'a/b' needs 'a' to be a folder" in reasons["a"] and "'ok/inside' needs 'ok'" in reasons["ok"]
    assert "it has a '.' segment" in reasons["c/./d"] and "'file' there is a file" in reasons["file/under"]
    assert "would be written as 't.parquet', which the source also holds" in reasons["t.csv"]
    assert sorted(i.key for i in plan.of("copy")) == ["a/b", "t.parquet"]
    doc = plan_to_contract(plan)
    assert {u["key"] for u in doc["unwritable"]} == set(reasons)


def test_checksum_and_no_traverse_conflict(src, tmp_path):
    with pytest.raises(SyncError, match="--checksum hashes every destination copy and --no-traverse"):
        build_plan(LocalStore(src), LocalStore(tmp_path / "dst"), checksum=True, no_traverse=True)
