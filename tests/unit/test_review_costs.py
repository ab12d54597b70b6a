"""The price catalog, the transfer arithmetic, the recommender and the data plan contract (no synth needed)."""

from __future__ import annotations

import csv
import json
from importlib import resources

import pytest

from lepton_cdk.contract import ContractError, SchemaVersionError, data_plan_from_dict, read_data_plan
from lepton_cdk.review import CatalogError, load_catalog, parse_catalog, recommend, transfer_cost
from lepton_cdk.review.infracost import infracost_usage_yaml

HEADER = "cloud,region,kind,sku,pricing,unit,price_usd,gpu_memory_gib,tier_start_gib,tier_end_gib,source_url,retrieved,note\n"
GB = 2**30


def shipped_rows() -> list[dict]:
    text = resources.files("lepton_cdk.review").joinpath("prices.csv").read_text()
    return list(csv.DictReader(text.splitlines()))


def price(rows, cloud, region, sku, pricing) -> float:
    (row,) = [r for r in rows if (r["cloud"], r["region"], r["sku"], r["pricing"]) == (cloud, region, sku, pricing)]
    return float(row["price_usd"])


def test_shipped_catalog_covers_the_constructs_defaults_with_dated_sources():
    catalog = load_catalog()
    for cloud, region, kind, sku in [
        ("aws", "us-east-1", "instance", "g5.xlarge"), ("aws", "eu-west-1", "instance", "g5.xlarge"),
        ("aws", "us-east-1", "instance", "g4dn.xlarge"), ("gcp", "us-central1", "instance", "g2-standard-4"),
        ("gcp", "us-central1", "instance", "n1-standard-8"), ("gcp", "us-central1", "accelerator", "nvidia-tesla-t4"),
    ]:
        for pricing in ("on-demand", "spot"):
            row = catalog.find(cloud, region, kind, sku, pricing)
            assert row is not None, (cloud, region, sku, pricing)
            assert row.source_url.startswith("https://") and row.retrieved
            assert row.is_estimate == (pricing == "spot")
    assert catalog.find("aws", "us-east-1", "storage", "s3-standard") and catalog.find("gcp", "us-central1", "storage", "gcs-standard")
    assert len(catalog.tiers("aws", "us-east-1", "egress", "internet")) == 4
    assert len(catalog.tiers("gcp", "us-central1", "egress", "internet")) == 3
    # egress rows cover the regions their prices are published for, not the whole world
    assert catalog.tiers("aws", "ap-southeast-2", "egress", "internet") == []


@pytest.mark.parametrize("missing", ["retrieved", "source_url"])
def test_a_row_without_a_date_or_source_is_refused_naming_the_row_and_file(missing):
    row = dict(zip(HEADER.strip().split(","), "aws,us-east-1,instance,x1,on-demand,hour,1.0,24,,,https://example.com/p,2024-06-01,".split(","), strict=True))
    row[missing] = ""
    text = HEADER + "aws,us-east-1,instance,ok,on-demand,hour,1.0,24,,,https://example.com/p,2024-06-01,\n" + ",".join(row.values()) + "\n"
    with pytest.raises(CatalogError, match=rf"my-prices\.csv:3: missing {missing}"):
        parse_catalog(text, "my-prices.csv")


def test_a_user_catalog_file_replaces_the_shipped_one(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(HEADER + "aws,us-east-1,instance,g5.xlarge,on-demand,hour,2.5,24,,,https://example.com/p,2025-01-01,negotiated\n")
    catalog = load_catalog(path)
    assert catalog.find("aws", "us-east-1", "instance", "g5.xlarge", "on-demand").price_usd == 2.5
    with pytest.raises(CatalogError, match="not found"):
        load_catalog(tmp_path / "absent.csv")


def test_aws_egress_crosses_tiers_at_the_list_prices():
    rows = shipped_rows()
    tiers = sorted((r for r in rows if r["cloud"] == "aws" and r["kind"] == "egress" and r["sku"] == "internet"),
                   key=lambda r: float(r["tier_start_gib"]))
    line = transfer_cost("aws", "us-east-1", "gcp", "us-central1", 15000 * GB, load_catalog())
    expected = 10240 * float(tiers[0]["price_usd"]) + (15000 - 10240) * float(tiers[1]["price_usd"])
    assert line.total_usd == pytest.approx(expected)
    assert "10240 GB x $0.09 + 4760 GB x $0.085" in line.inputs


def test_transfers_within_a_region_or_from_a_local_disk_cost_nothing_and_unknown_regions_are_unknown():
    catalog = load_catalog()
    assert transfer_cost("aws", "us-east-1", "aws", "us-east-1", 10 * GB, catalog).total_usd == 0
    assert transfer_cost("local", "-", "gcp", "us-central1", 10 * GB, catalog).total_usd == 0
    inter = transfer_cost("gcp", "us-central1", "gcp", "europe-west4", 10 * GB, catalog)
    assert inter.total_usd == pytest.approx(10 * catalog.tiers("gcp", "us-central1", "egress", "inter-region")[0].price_usd)
    unknown = transfer_cost("aws", "ap-southeast-2", "gcp", "us-central1", 10 * GB, catalog)
    assert unknown.total_usd is None and "ap-southeast-2" in unknown.reason


SMALL = HEADER + "".join(f"{line},https://example.com/p,2025-01-01,\n" for line in [
    "aws,us-east-1,instance,cheap16,on-demand,hour,0.50,16,,",
    "aws,us-east-1,instance,big48,on-demand,hour,2.00,48,,",
    "gcp,us-central1,instance,mid24,on-demand,hour,0.60,24,,",
    "gcp,us-central1,instance,n1-x,on-demand,hour,0.10,,,",
    "gcp,us-central1,accelerator,t4,on-demand,hour,0.30,16,,",
    "aws,us-*,egress,internet,list,GB,0.10,,0,",
    "gcp,us-*,egress,internet,list,GB,0.20,,0,",
])


def small_catalog(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text(SMALL)
    return load_catalog(path)


def test_a_cloud_storage_multi_region_is_priced_as_a_region_of_its_continent():
    # a bucket in the "us" multi-region has no price rows of its own; `lepton data plan` and `lepton review`
    # must both price it (they share the catalog lookup), as us-central1
    catalog = load_catalog()
    multi = transfer_cost("gcp", "us", "aws", "us-east-1", 500 * GB, catalog)
    region = transfer_cost("gcp", "us-central1", "aws", "us-east-1", 500 * GB, catalog)
    assert multi.total_usd is not None and multi.total_usd == region.total_usd > 0
    assert transfer_cost("gcp", "us", "gcp", "us-central1", 10 * GB, catalog).total_usd == 0  # same continent's region


def test_recommend_picks_the_cheapest_instance_meeting_the_memory_need(tmp_path):
    catalog = small_catalog(tmp_path)
    best = recommend(catalog, gpu_memory_gib=16)
    # n1-x + t4 = 0.40/h beats cheap16 at 0.50/h
    assert [(c.instance_type, round(c.hourly_usd, 2)) for c in best[:2]] == [("n1-x+t4", 0.40), ("cheap16", 0.50)]
    assert recommend(catalog, gpu_memory_gib=20)[0].instance_type == "mid24"
    assert [c.instance_type for c in recommend(catalog, gpu_memory_gib=20, clouds=["aws"])] == ["big48"]
    assert recommend(catalog, gpu_memory_gib=64) == []


def test_egress_from_where_the_data_lives_flips_the_answer(tmp_path):
    catalog = small_catalog(tmp_path)
    # Without data, GCP's n1-x+t4 is cheapest: 0.40 x 730 = 292 vs AWS cheap16 0.50 x 730 = 365.
    assert recommend(catalog, gpu_memory_gib=16, data_location=("aws", "us-east-1"), data_gib=0)[0].cloud == "gcp"
    # 1000 GB in AWS: moving it to GCP costs 1000 x 0.10 = 100, so AWS (365) beats GCP (292 + 100).
    ranked = recommend(catalog, gpu_memory_gib=16, data_location=("aws", "us-east-1"), data_gib=1000)
    assert (ranked[0].instance_type, ranked[0].first_month_usd) == ("cheap16", pytest.approx(365.0))
    gcp = next(c for c in ranked if c.instance_type == "n1-x+t4")
    assert gcp.egress.total_usd == pytest.approx(100.0) and gcp.first_month_usd == pytest.approx(392.0)


def test_recommend_orders_ties_the_same_way_every_time_and_puts_unknown_egress_last(tmp_path):
    path = tmp_path / "tie.csv"
    path.write_text(SMALL + "aws,us-*,egress,inter-region,list,GB,0.02,,0,,https://example.com/p,2025-01-01,\n"
                    + "aws,us-west-2,instance,cheap16,on-demand,hour,0.50,16,,,https://example.com/p,2025-01-01,\n"
                    + "aws,eu-west-1,instance,cheap16,on-demand,hour,0.10,16,,,https://example.com/p,2025-01-01,\n")
    ranked = recommend(load_catalog(path), gpu_memory_gib=16, data_location=("aws", "eu-west-1"), data_gib=10)
    # The data sits in eu-west-1, from where this catalog prices no egress: only the same-region candidate is
    # known ($0 transfer); the rest rank after it by monthly price, and the us-east-1 / us-west-2 tie at
    # 0.50/h breaks on the region name
    assert [(c.region, c.instance_type) for c in ranked] == [
        ("eu-west-1", "cheap16"), ("us-central1", "n1-x+t4"), ("us-east-1", "cheap16"), ("us-west-2", "cheap16"), ("us-central1", "mid24"),
        ("us-east-1", "big48")]
    assert ranked[0].first_month_usd == pytest.approx(0.10 * 730)
    assert ranked[1].egress.total_usd is None and "eu-west-1" in ranked[1].egress.reason
    assert ranked[-1].first_month_usd is None


def plan_doc(**overrides) -> dict:
    doc = {"schema_version": "1.0.0", "kind": "lepton-cdk/data-plan", "mode": "full",
           "source": {"cloud": "aws", "region": "us-east-1", "uri": "s3://src-bucket/data/"},
           "destination": {"cloud": "gcp", "region": "us-central1", "uri": "gs://dst-bucket/data/"},
           "objects_to_copy": 3, "bytes_to_copy": 50 * GB, "objects_to_delete": 0, "bytes_to_delete": 0}
    doc.update(overrides)
    return doc


def test_data_plan_reads_and_a_newer_major_version_is_refused(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_doc(extra_field_from_a_minor_version=1)))
    plan = read_data_plan(path)
    assert (plan.source.cloud, plan.destination.region, plan.bytes_to_copy) == ("aws", "us-central1", 50 * GB)
    with pytest.raises(SchemaVersionError, match="upgrade lepton-cdk"):
        data_plan_from_dict(plan_doc(schema_version="2.0.0"))
    with pytest.raises(ContractError, match="bytes_to_copy"):
        data_plan_from_dict(plan_doc(bytes_to_copy=-1))
    # the fix names the command that writes a data plan, not the manifest's
    with pytest.raises(SchemaVersionError, match=r"regenerate it with `lepton data plan --json` so the versions match"):
        data_plan_from_dict(plan_doc(schema_version="0.9.0"))
    with pytest.raises(ContractError, match=r"semantic version like '1\.0\.0'; regenerate it with `lepton data plan --json`"):
        data_plan_from_dict(plan_doc(schema_version="one"))
    path.write_text("{")
    with pytest.raises(ContractError, match="not valid JSON"):
        read_data_plan(path)


def test_infracost_usage_file_carries_the_planned_egress():
    yaml = pytest.importorskip("yaml")
    aws = yaml.safe_load(infracost_usage_yaml(data_plan_from_dict(plan_doc())))
    assert aws["version"] == 0.1
    assert aws["resource_usage"]["aws_data_transfer.us-east-1"] == {"region": "us-east-1", "monthly_outbound_internet_gb": 50.0}
    gcp_src = plan_doc(source={"cloud": "gcp", "region": "us-central1", "uri": "gs://old/x"},
                       destination={"cloud": "aws", "region": "us-east-1", "uri": "s3://new/x"})
    gcp = yaml.safe_load(infracost_usage_yaml(data_plan_from_dict(gcp_src)))
    assert gcp["resource_usage"]["google_storage_bucket.old"] == {"monthly_egress_data_transfer_gb": {"worldwide": 50.0}}


def test_a_catalog_that_is_a_folder_or_not_text_is_one_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="price catalog .* pass an existing CSV to --prices"):
        load_catalog(tmp_path)
    binary = tmp_path / "prices.csv"
    binary.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(CatalogError, match="not UTF-8"):
        load_catalog(binary)
