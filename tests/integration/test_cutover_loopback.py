"""A cutover on loopback, for real: `lepton serve` as the old and the new endpoint (the pipeline's model), `lepton
cutover shadow` mirroring to the new one, `lepton cutover split` in front of both, and clients sending inference
requests the whole time while `lepton cutover run` walks 0 -> 1 -> 10 -> 50 -> 100.

- Same model: the cutover completes (with the final data sync before 100%) and rolls back in one command; no client
  request fails or changes answer, and the shadow's report counts the comparisons.
- A deliberately different model: the disagreement gate stops the cutover at 0%; no client ever sees the new model.
- A new server that stalls (SIGSTOP) at 10%, or dies (SIGKILL) at 50%: the gates stop the cutover and the rollback
  leaves all traffic on the old endpoint; no client request fails (the splitter retries on the old endpoint), and
  the shadow's timeouts and errors are counted without touching the callers.

Three `lepton serve` processes in all (old, new, changed); each scenario starts its own shadow and splitter.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from lepton_cdk.cli import main
from lepton_cdk.contract import Artifact, read_manifest, write_manifest
from lepton_cdk.cutover.metrics import parse_metrics
from lepton_cdk.cutover.state import read_state
from tests.support.emulators import Server, free_port, start_server

pytestmark = pytest.mark.integration

LEPTON = [sys.executable, "-m", "lepton_cdk.cli"]
BATCHES, ROWS_PER_BATCH, CLIENTS = 24, 4, 2


def _serve(manifest_dir: Path, log: Path) -> Server:
    port = free_port()
    return start_server([*LEPTON, "serve", str(manifest_dir), "--port", str(port)], url=f"http://127.0.0.1:{port}",
                        ready_path="/v2/health/ready", log=log)


def _changed_model(pipeline_out: Path, folder: Path) -> Path:
    """A copy of the model with one weight matrix nudged, and a manifest that truthfully describes it."""
    import onnx
    from onnx import numpy_helper

    shutil.copytree(pipeline_out, folder)
    manifest = read_manifest(folder)
    path = manifest.artifact_file(manifest.model_artifact)
    model = onnx.load(str(path))
    init = next(i for i in model.graph.initializer if numpy_helper.to_array(i).dtype == np.float32 and numpy_helper.to_array(i).size > 8)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + np.float32(0.05), init.name))
    onnx.save(model, str(path))
    artifacts = [Artifact.from_file(a.name, manifest.artifact_file(a), folder, a.media_type) if a.name == manifest.primary_artifact else a
                 for a in manifest.artifacts]
    write_manifest(replace(manifest, artifacts=artifacts), folder / "manifest.json")
    return folder


@pytest.fixture(scope="module")
def servers(pipeline_out, tmp_path_factory) -> Iterator[dict[str, Server]]:
    logs = tmp_path_factory.mktemp("servers")
    started: dict[str, Server] = {}
    try:
        started["old"] = _serve(pipeline_out, logs / "old.log")
        started["new"] = _serve(pipeline_out, logs / "new.log")
        started["changed"] = _serve(_changed_model(pipeline_out, logs / "changed"), logs / "changed.log")
        yield started
    finally:
        for server in started.values():
            if server.proc.poll() is None:
                os.killpg(server.proc.pid, signal.SIGCONT)  # a test that stopped it may have failed before resuming it
            server.stop()


@pytest.fixture(scope="module")
def requests(pipeline_out, servers) -> list[tuple[str, bytes, list]]:
    """(infer path, body, the old endpoint's outputs) for each batch of raw rows."""
    manifest = read_manifest(pipeline_out)
    names = manifest.signature.feature_names
    rng = np.random.default_rng(7)
    meta = httpx.get(f"{servers['old'].url}/v2/models/{manifest.model_name}", timeout=10).json()
    found = []
    with httpx.Client(timeout=30) as client:
        for i in range(BATCHES):
            columns = {n: [float(v) for v in rng.normal(40, 25, ROWS_PER_BATCH)] for n in names}
            inputs = [{"name": t["name"], "datatype": t["datatype"], "shape": [ROWS_PER_BATCH, len(names)],
                       "data": [[columns[n][r] for n in names] for r in range(ROWS_PER_BATCH)]} for t in meta["inputs"]]
            path = f"/v2/models/{manifest.model_name}/infer"
            body = json.dumps({"id": f"batch-{i}", "inputs": inputs}).encode()
            answer = client.post(servers["old"].url + path, content=body, headers={"content-type": "application/json"})
            assert answer.status_code == 200, answer.text
            found.append((path, body, answer.json()["outputs"]))
    return found


@dataclass
class Traffic:
    """What the clients saw: one (status, same answer as the old endpoint?) per request."""

    results: list[tuple[int, bool]] = field(default_factory=list)

    @property
    def failed(self) -> list[int]:
        return [status for status, _ in self.results if status != 200]

    @property
    def changed(self) -> int:
        return sum(1 for status, same in self.results if status == 200 and not same)


@contextmanager
def clients(url: str, requests: list) -> Iterator[Traffic]:
    """CLIENTS threads sending the batches round-robin to ``url`` until the block ends."""
    traffic, stop = Traffic(), threading.Event()

    def work(offset: int) -> None:
        with httpx.Client(timeout=60) as client:
            i = offset
            while not stop.is_set():
                path, body, expected = requests[i % len(requests)]
                try:
                    answer = client.post(url + path, content=body, headers={"content-type": "application/json"})
                    traffic.results.append((answer.status_code, answer.status_code == 200 and answer.json()["outputs"] == expected))
                except httpx.HTTPError:
                    traffic.results.append((0, False))
                i += 1

    threads = [threading.Thread(target=work, args=(n * 7,), daemon=True) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        yield traffic
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)


@dataclass
class Cutover:
    plan: Path
    shadow: Server
    splitter: Server
    shadow_report: Path

    def state(self) -> dict:
        return httpx.get(self.splitter.url + "/cutover/state", timeout=5).json()

    def split_counts(self) -> dict[str, float]:
        snap = parse_metrics(httpx.get(self.splitter.url + "/metrics", timeout=5).text)
        return {side: snap.total("lepton_split_requests_total", lambda labels, s=side: labels["upstream"] == s) for side in ("old", "new")}


@contextmanager
def cutover(tmp_path: Path, old: str, new: str, *, data_sync: str = "") -> Iterator[Cutover]:
    """A shadow (old -> new) and a splitter (old via the shadow, new) for a plan of 0 -> 1 -> 10 -> 50 -> 100."""
    shadow_port, split_port = free_port(), free_port()
    report = tmp_path / "shadow-report.json"
    plan = tmp_path / "cutover.yaml"
    plan.write_text(f"""\
old: {{url: {old}, name: old}}
new: {{url: {new}, name: new}}
traffic:
  via: splitter
  listen: 127.0.0.1:{split_port}
  state: state.json
  old_upstream: http://127.0.0.1:{shadow_port}
  upstream_timeout_s: 1
shadow: {{url: http://127.0.0.1:{shadow_port}}}
window_s: 1
gates:
  healthy: {{timeout_s: 1}}
  disagreement_rate: {{max: 0.0, min_compared: 10}}
  error_rate: {{max: 0.0, min_requests: 5}}
  p95_latency_ms: {{max: 5000, min_requests: 5}}
steps: [0, 1, 10, 50, 100]
{data_sync}""")
    shadow = start_server([*LEPTON, "cutover", "shadow", "--primary", old, "--shadow", new, "--listen", f"127.0.0.1:{shadow_port}",
                           "--report", str(report), "--report-interval-s", "1", "--shadow-timeout-s", "1", "--queue-size", "8",
                           "--workers", "2"], url=f"http://127.0.0.1:{shadow_port}", ready_path="/metrics", log=tmp_path / "shadow.log")
    try:
        splitter = start_server([*LEPTON, "cutover", "split", str(plan)], url=f"http://127.0.0.1:{split_port}",
                                ready_path="/cutover/state", log=tmp_path / "split.log")
        try:
            yield Cutover(plan, shadow, splitter, report)
        finally:
            splitter.stop()
    finally:
        shadow.stop()  # SIGTERM: the shadow writes its last report on the way out


def _run(plan: Path, report: Path, capsys) -> tuple[int, dict, str]:
    status = main(["cutover", "run", str(plan), "--report", str(report)])
    captured = capsys.readouterr()
    return status, json.loads(report.read_text()), captured.err


def _when_weight(c: Cutover, weight: int, action) -> threading.Thread:
    """Run ``action`` as soon as the splitter reports ``weight``."""
    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if c.state()["weight_percent"] == weight:
                action()
                return
            time.sleep(0.02)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_same_model_cutover_completes_and_rolls_back_without_a_failed_or_changed_answer(servers, requests, tmp_path, capsys):
    source, destination = tmp_path / "old-data", tmp_path / "new-data"
    source.mkdir()
    (source / "features.csv").write_text("a,b\n1,2\n")
    sync = f"data_sync: {{src: {source}, dst: {destination}}}\n"
    with cutover(tmp_path, servers["old"].url, servers["new"].url, data_sync=sync) as c, clients(c.splitter.url, requests) as traffic:
        time.sleep(1.5)  # some shadow comparisons before the first gate
        status, report, err = _run(c.plan, tmp_path / "run.json", capsys)
        assert status == 0, err
        at_full = c.split_counts()
        assert c.state()["weight_percent"] == 100
        time.sleep(1)
        assert main(["cutover", "rollback", str(c.plan)]) == 0
        assert "rolled back to 0% (every caller on old" in capsys.readouterr().out
        after_rollback = c.split_counts()
        time.sleep(1)
        settled = c.split_counts()
        shadow_metrics = parse_metrics(httpx.get(c.shadow.url + "/metrics", timeout=5).text)
    shadow_report = json.loads(c.shadow_report.read_text())

    assert traffic.results and traffic.failed == [] and traffic.changed == 0, \
        f"{len(traffic.failed)} failed and {traffic.changed} changed answers of {len(traffic.results)}"
    assert report["outcome"] == "completed" and report["final_percent"] == 100
    assert [s["moved_to"] for s in report["steps"]] == [1, 10, 50, 100]
    assert all(g["passed"] for s in report["steps"] for g in s["gates"])
    assert {g["gate"] for g in report["steps"][0]["gates"]} == {"healthy", "disagreement_rate", "error_rate", "p95_latency_ms"}
    assert report["data_sync"]["ok"] is True and (destination / "features.csv").read_text() == "a,b\n1,2\n"
    assert at_full["new"] > 0, "at 100% the new endpoint answered"
    assert settled["new"] == after_rollback["new"] and settled["old"] > after_rollback["old"], "after the rollback only old answers"
    assert read_state(c.plan.parent / "state.json").weight_percent == 0

    assert shadow_report["running"] is False, "SIGTERM wrote a last report"
    for key in ("requests", "compared", "disagreements"):
        assert isinstance(shadow_report[key], int)
    assert shadow_report["compared"] >= 10 and shadow_report["disagreements"] == 0
    assert shadow_report["max_abs_diff"] == {"logit": 0.0, "probability": 0.0}
    assert shadow_metrics.total("lepton_shadow_compared_total") >= 10
    print("\ncutover run report:\n" + json.dumps(report, indent=1))
    print("shadow report: " + json.dumps({k: shadow_report[k] for k in ("requests", "mirrored", "compared", "disagreements",
                                                                         "dropped", "shadow_errors", "latency_ms")}))


def test_a_different_model_is_stopped_by_the_disagreement_gate_before_any_client_sees_it(servers, requests, tmp_path, capsys):
    with cutover(tmp_path, servers["old"].url, servers["changed"].url) as c, clients(c.splitter.url, requests) as traffic:
        time.sleep(1.5)
        status, report, err = _run(c.plan, tmp_path / "run.json", capsys)
        counts = c.split_counts()
    shadow_report = json.loads(c.shadow_report.read_text())

    assert status == 1 and err.count("\n") == 1
    assert err.startswith("error: gate 'disagreement_rate' failed at the 0% step, so the cutover must not move to 1%: ")
    assert report["outcome"] == "rolled_back" and report["final_percent"] == 0 and report["rollback"]["gate"] == "disagreement_rate"
    assert [s["moved_to"] for s in report["steps"]] == [None]
    assert traffic.results and traffic.failed == [] and traffic.changed == 0
    assert counts["new"] == 0, "no request ever reached the different model through the splitter"
    assert shadow_report["disagreements"] == shadow_report["compared"] > 0
    assert "output 'logit' differs by" in shadow_report["examples"][0]["reason"] or "output 'probability'" in shadow_report["examples"][0]["reason"]
    print("\ndifferent model: " + json.dumps({"steps": report["steps"], "rollback": report["rollback"]}, indent=1))


def test_a_new_server_that_stalls_halfway_is_rolled_back_without_a_failed_request(servers, requests, tmp_path, capsys):
    new = servers["new"]
    with cutover(tmp_path, servers["old"].url, new.url) as c, clients(c.splitter.url, requests) as traffic:
        time.sleep(1.5)
        watcher = _when_weight(c, 10, lambda: os.killpg(new.proc.pid, signal.SIGSTOP))
        try:
            status, report, err = _run(c.plan, tmp_path / "run.json", capsys)
            watcher.join(timeout=5)
            time.sleep(1)  # clients keep going while the rollback is in force
        finally:
            os.killpg(new.proc.pid, signal.SIGCONT)
        weight = c.state()["weight_percent"]
    shadow_report = json.loads(c.shadow_report.read_text())

    assert status == 1 and "failed at the 10% step, so the cutover must not move to 50%" in err
    assert report["outcome"] == "rolled_back" and report["rollback"]["from_percent"] == 10 and weight == 0
    failed = {g["gate"]: g["detail"] for g in report["steps"][-1]["gates"] if not g["passed"]}
    assert "did not answer within 1s" in failed["healthy"]
    assert traffic.results and traffic.failed == [] and traffic.changed == 0
    assert shadow_report["shadow_timeouts"] >= 1, "the stalled shadow timed out, counted, without touching the callers"
    print("\nstalled at 10%: " + json.dumps({"failed_gates": failed, "rollback": report["rollback"],
                                             "shadow": {k: shadow_report[k] for k in ("requests", "compared", "dropped",
                                                                                      "shadow_timeouts", "shadow_errors")}}, indent=1))


def test_a_new_server_that_dies_halfway_is_rolled_back_without_a_failed_request(servers, requests, tmp_path, capsys):
    new = servers["new"]  # runs last in this module: the new server does not come back
    with cutover(tmp_path, servers["old"].url, new.url) as c, clients(c.splitter.url, requests) as traffic:
        time.sleep(1.5)
        watcher = _when_weight(c, 50, lambda: os.killpg(new.proc.pid, signal.SIGKILL))
        status, report, err = _run(c.plan, tmp_path / "run.json", capsys)
        watcher.join(timeout=5)
        time.sleep(1)
        weight = c.state()["weight_percent"]
        fallbacks = parse_metrics(httpx.get(c.splitter.url + "/metrics", timeout=5).text).total("lepton_split_fallbacks_total")
    shadow_report = json.loads(c.shadow_report.read_text())

    assert status == 1 and "failed at the 50% step, so the cutover must not move to 100%" in err
    assert report["outcome"] == "rolled_back" and report["rollback"]["from_percent"] == 50 and weight == 0
    failed = {g["gate"]: g["detail"] for g in report["steps"][-1]["gates"] if not g["passed"]}
    assert "cannot reach" in failed["healthy"]
    assert traffic.results and traffic.failed == [] and traffic.changed == 0
    assert fallbacks >= 1, "requests the dead endpoint could not answer were answered by the old one"
    assert shadow_report["shadow_errors"] >= 1
    print("\ndied at 50%: " + json.dumps({"failed_gates": failed, "fallbacks": fallbacks, "clients": len(traffic.results)}, indent=1))
