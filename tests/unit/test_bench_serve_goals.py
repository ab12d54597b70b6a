"""The serve benchmark's goal bookkeeping: each `lepton serve` row is judged against the Triton row with the same
transport, batch and clients, and a row that could not run is "not measured", never "met"."""

from __future__ import annotations

import pytest

from tests.bench.bench_serve import _goals, jain_fairness, merge_repeats, table


def _row(server: str, protocol: str, tensors: str, batch: int, clients: int, p50: float | None, rps: float | None) -> dict:
    if p50 is None:
        return {"server": server, "protocol": protocol, "tensors": tensors, "batch": batch, "clients": clients,
                "status": "not available: this lepton serve has no --grpc-port"}
    return {"server": server, "protocol": protocol, "tensors": tensors, "batch": batch, "clients": clients, "status": "ok",
            "p50_ms": p50, "p95_ms": p50 * 2, "requests_per_s": rps, "rows_per_s": rps * batch}


def test_each_lepton_row_is_judged_against_the_matching_triton_row():
    rows = [_row("lepton serve", "http", "binary", 1, 1, 0.35, 2800.0), _row("triton", "http", "binary", 1, 1, 0.6, 1600.0),
            _row("lepton serve", "http", "json", 64, 8, 3.0, 1500.0), _row("triton", "http", "json", 64, 8, 2.5, 1900.0),
            _row("triton", "http", "json", 64, 1, 0.1, 99999.0)]  # another row's figures must not leak into the judgement
    _goals(rows)
    assert rows[0]["goals"] == {">= Triton's requests/s": "met", "<= Triton's p50": "met", "p50 <= 0.4 ms": "met"}
    assert rows[2]["goals"] == {">= Triton's requests/s": "not met", "<= Triton's p50": "not met"}
    assert all("goals" not in r for r in rows if r["server"] == "triton")


def test_a_row_that_did_not_run_is_not_measured_and_shows_why():
    rows = [_row("lepton serve", "grpc", "binary", 1, 1, None, None), _row("triton", "grpc", "binary", 1, 1, 0.6, 1500.0),
            _row("lepton serve", "http", "binary", 1, 1, 0.5, 1700.0), _row("triton", "http", "binary", 1, 1, None, None)]
    _goals(rows)
    assert set(rows[0]["goals"].values()) == {"not measured"}
    assert rows[2]["goals"] == {">= Triton's requests/s": "not measured", "<= Triton's p50": "not measured", "p50 <= 0.4 ms": "not met"}
    rendered = table(rows).splitlines()
    assert len(rendered) == 2 + len(rows) and all(line.count("|") == rendered[0].count("|") for line in rendered)
    assert "not available: this lepton serve has no --grpc-port" in rendered[2]


def test_rounds_merge_into_one_row_of_medians_and_a_failed_round_fails_the_row():
    rounds = [_row("lepton serve", "grpc", "binary", 1, 8, p50, rps) for p50, rps in ((2.0, 3000.0), (9.0, 1000.0), (2.2, 3200.0))]
    failed = [_row("triton", "grpc", "binary", 1, 8, 2.1, 3100.0), {**_row("triton", "grpc", "binary", 1, 8, 2.1, 3100.0),
                                                                     "status": "failed: 3 requests failed"}]
    for row in rounds + failed:
        row["requests"] = 100
    merged = merge_repeats(rounds + failed)
    assert len(merged) == 2
    assert (merged[0]["p50_ms"], merged[0]["requests_per_s"], merged[0]["requests"]) == (2.2, 3000.0, 300)  # medians, not one round's
    assert [r["p50_ms"] for r in merged[0]["rounds"]] == [2.0, 9.0, 2.2]
    assert merged[1]["status"] == "failed: 3 requests failed"


def test_fairness_is_one_when_clients_share_alike_and_falls_as_one_client_takes_more():
    # the figure the docs use to say a closed-loop p50 below the mean came from serving some clients faster than others
    assert jain_fairness([500, 500, 500, 500]) == 1.0
    assert jain_fairness([1000, 0, 0, 0]) == pytest.approx(0.25)  # one client got everything: 1/n
    assert jain_fairness([300, 100]) == pytest.approx(400**2 / (2 * (300**2 + 100**2)))
    assert jain_fairness([520, 480]) > jain_fairness([700, 300]) > jain_fairness([900, 100])
    assert jain_fairness([0, 0]) == 1.0  # nobody got anything: nobody was favoured
