"""`lepton cutover` plans: one plan in three formats, every bad config as one line, the weight files, and the DNS
workflow (a step is a pull request changing LEPTON_CUTOVER_WEIGHT; check gates it; rollback writes 0), in both
directions. Live traffic through real servers is in tests/integration/test_cutover_loopback.py."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from lepton_cdk.cli import main
from lepton_cdk.cutover.errors import CutoverError, PlanError
from lepton_cdk.cutover.plan import load_plan
from lepton_cdk.cutover.state import read_state, read_weight_setting, write_state, write_weight_setting
from lepton_cdk.cutover.steps import check, current_percent, gated_step, rollback

PLAN_YAML = """\
old: {url: http://127.0.0.1:18081, name: aws}
new: {url: http://127.0.0.1:18082, name: gcp}
traffic: {via: splitter, listen: 127.0.0.1:18095, state: state.json}
shadow: {url: http://127.0.0.1:18090}
window_s: 30
gates:
  healthy: true
  disagreement_rate: {max: 0.0, min_compared: 100}
  error_rate: {max: 0.01}
steps:
  - 0
  - 1
  - {percent: 10, gates: {p95_latency_ms: {max: 250, min_requests: 20}, error_rate: {max: 0.02}}}
  - {weights: {old: 50, new: 50}, hold_s: 5}
  - 100
data_sync: {src: s3://old-data/features/, dst: gs://new-data/features/}
"""

PLAN_TOML = """\
window_s = 30
steps = [0, 1, {percent = 10, gates = {p95_latency_ms = {max = 250, min_requests = 20}, error_rate = {max = 0.02}}},
         {weights = {old = 50, new = 50}, hold_s = 5}, 100]
[old]
url = "http://127.0.0.1:18081"
name = "aws"
[new]
url = "http://127.0.0.1:18082"
name = "gcp"
[traffic]
via = "splitter"
listen = "127.0.0.1:18095"
state = "state.json"
[shadow]
url = "http://127.0.0.1:18090"
[gates]
healthy = true
disagreement_rate = {max = 0.0, min_compared = 100}
error_rate = {max = 0.01}
[data_sync]
src = "s3://old-data/features/"
dst = "gs://new-data/features/"
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _yaml_plan(folder: Path, **replace: str) -> Path:
    text = PLAN_YAML
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return _write(folder, "plan.yaml", text)


def test_one_plan_reads_the_same_from_yaml_toml_and_json(tmp_path):
    from_yaml = load_plan(_write(tmp_path, "plan.yaml", PLAN_YAML))
    from_toml = load_plan(_write(tmp_path, "plan.toml", PLAN_TOML))
    from_json = load_plan(_write(tmp_path, "plan.json", json.dumps(_yaml_as_json())))
    for plan in (from_yaml, from_toml, from_json):
        assert plan.percents == (0, 1, 10, 50, 100)
        assert plan.traffic.state == tmp_path / "state.json", "relative paths are relative to the plan file"
        assert plan.new.metrics_url == "http://127.0.0.1:18082/metrics" and plan.new.ready_url.endswith("/v2/health/ready")
        ten = plan.step(10)
        assert ten.gates == {"healthy": {"timeout_s": 5.0}, "disagreement_rate": {"min_compared": 100.0, "max": 0.0},
                             "error_rate": {"min_requests": 1.0, "max": 0.02}, "p95_latency_ms": {"min_requests": 20.0, "max": 250.0}}
        assert plan.step(1).gates["error_rate"] == {"min_requests": 1.0, "max": 0.01}, "a step's override stays in that step"
        assert plan.step(50).hold_s == 5.0
        assert plan.data_sync.plan_command == "lepton data plan s3://old-data/features/ gs://new-data/features/ --mode incremental"
    assert from_yaml.to_dict()["steps"] == from_toml.to_dict()["steps"] == from_json.to_dict()["steps"]


def _yaml_as_json() -> dict:
    import yaml

    return yaml.safe_load(PLAN_YAML)


@pytest.mark.parametrize("replace, expected", [
    ({"{weights: {old: 50, new: 50}, hold_s: 5}": "{weights: {old: 50, new: 60}}"},
     "steps[3].weights: old 50 + new 60 = 110; the weights are a percent split and must sum to 100"),
    ({"  - 1\n": "  - 20\n"}, "steps[2]: 10% goes backwards from 20%; steps only go forward (the way back is `lepton cutover rollback`)"),
    ({"  - 1\n": "  - 0\n"}, "steps[1]: 0% repeats 0%"),
    ({"  - 100\n": "  - 90\n"}, "steps: the last step is 90%; end the plan at 100%"),
    ({"  healthy: true": "  latency: {max: 1}"}, "gates.latency: unknown gate; known gates: healthy, disagreement_rate, error_rate, p95_latency_ms"),
    ({"  error_rate: {max: 0.01}": "  error_rate: {max: 5}"}, "gates.error_rate.max: 5 is not a number from 0 to 1"),
    ({"  error_rate: {max: 0.01}": "  error_rate: {limit: 0.01}"}, "gates.error_rate: unknown key 'limit'; known keys: max, min_requests"),
    ({"  error_rate: {max: 0.01}": "  error_rate: true"}, "gates.error_rate: needs a threshold: {max: ...}"),
    ({"shadow: {url: http://127.0.0.1:18090}\n": ""}, "gates.disagreement_rate: needs a shadow"),
    ({"via: splitter": "via: magic"}, "traffic.via: 'magic' is not a way to split traffic; use splitter"),
    ({", state: state.json": ""}, "traffic: via: splitter needs state"),
    ({"http://127.0.0.1:18082": "http://127.0.0.1:18081"}, "new.url: is the old endpoint's URL too"),
    ({"http://127.0.0.1:18082": "ftp://new"}, "new.url: 'ftp://new' is not an http(s) URL"),
    ({"listen: 127.0.0.1:18095": "listen: nowhere"}, "traffic.listen: 'nowhere' is not HOST:PORT"),
    ({"window_s: 30": "window_s: -1"}, "window_s: -1 is not a number from 0 to 86400"),
    ({"window_s: 30": "windows: 30"}, "plan: unknown key 'windows'"),
    ({"  - 1\n": "  - 250\n"}, "steps[1].percent: 250 is not a whole percent from 0 to 100"),
])
def test_bad_plans_fail_with_one_line_naming_the_place_and_the_fix(tmp_path, replace, expected):
    path = _yaml_plan(tmp_path, **replace)
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


@pytest.mark.parametrize("name, text, expected", [
    ("plan.yaml", "old: [unclosed", "not valid YAML"),
    ("plan.toml", "old = ", "not valid TOML"),
    ("plan.json", "{", "not valid JSON"),
    ("plan.txt", "{}", "unknown plan format '.txt'"),
    ("plan.yaml", "a: &a [1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("bcdefg", "cdefgh", strict=True)),
     "expands to more than"),
])
def test_unreadable_plans_fail_with_one_line(tmp_path, name, text, expected):
    with pytest.raises(PlanError) as caught:
        load_plan(_write(tmp_path, name, text))
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_prints_a_bad_plan_as_one_error_line(tmp_path, capsys):
    path = _yaml_plan(tmp_path, **{"{weights: {old: 50, new: 50}, hold_s: 5}": "{weights: {old: 50, new: 60}}"})
    assert main(["cutover", "plan", str(path), "--no-probe"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: steps[3].weights: old 50 + new 60 = 110")


def test_plan_names_an_unreachable_endpoint_in_one_line(tmp_path, capsys):
    port = _closed_port()
    path = _yaml_plan(tmp_path, **{"http://127.0.0.1:18081": f"http://127.0.0.1:{port}"})
    assert main(["cutover", "plan", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"the old endpoint aws (http://127.0.0.1:{port}) is unreachable (ConnectError); check old.url" in err


def test_plan_shows_steps_gates_the_final_data_sync_and_the_way_back(tmp_path, capsys):
    source = tmp_path / "old-data"
    (source / "features").mkdir(parents=True)
    (source / "features" / "part-0.csv").write_text("a,b\n1,2\n")
    path = _yaml_plan(tmp_path, **{"s3://old-data/features/": str(source), "gs://new-data/features/": str(tmp_path / "new-data")})
    write_state(load_plan(path).traffic.state, 10, by="test")
    assert main(["cutover", "plan", str(path), "--no-probe", "--data-plan"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "traffic now: 10% on gcp" in out[1]
    assert [line.split("%")[0].split()[-1] for line in out if "step " in line] == ["0", "1", "10", "50", "100"]
    assert any(line.startswith(" *step  10%  to move on: healthy") and "p95_latency_ms <= 250" in line for line in out)
    (data,) = [line for line in out if line.startswith("  data")]
    assert f"lepton data plan {source} {tmp_path / 'new-data'} --mode incremental -> copy 1 objects (8 bytes)" in data
    assert out.index(data) == len(out) - 3, "the data sync comes right before the last step"
    assert "lepton cutover rollback" in out[-1]


# -- where the weight lives ---------------------------------------------------------------------------------------


def test_state_file_round_trips_and_a_bad_one_is_one_line(tmp_path):
    path = tmp_path / "state.json"
    assert read_state(path) is None
    written = write_state(path, 10, by="test", note="why")
    assert read_state(path) == written and written.weight_percent == 10 and len(written.revision) == 12
    assert write_state(path, 10, by="test").revision != written.revision, "every write is a new revision"
    path.write_text(json.dumps({"kind": "lepton-cutover-state", "weight_percent": 130}))
    with pytest.raises(CutoverError, match="not a cutover state file .* run `lepton cutover rollback`"):
        read_state(path)


def test_settings_file_keeps_its_other_lines(tmp_path):
    path = tmp_path / "cutover.env"
    assert read_weight_setting(path) is None
    path.write_text("# cutover of the credit model\nLEPTON_CUTOVER_DNS=aws\nexport LEPTON_CUTOVER_WEIGHT=10  # step 3\n")
    assert read_weight_setting(path) == 10
    write_weight_setting(path, 50)
    assert path.read_text() == "# cutover of the credit model\nLEPTON_CUTOVER_DNS=aws\nLEPTON_CUTOVER_WEIGHT=50\n"
    path.write_text("LEPTON_CUTOVER_WEIGHT=abc\n")
    with pytest.raises(CutoverError, match="'abc' is not a whole percent"):
        read_weight_setting(path)


def test_the_splitter_sends_exactly_the_weight_to_the_new_endpoint(tmp_path):
    from lepton_cdk.cutover.splitter import TrafficSplitter

    state = tmp_path / "state.json"
    splitter = TrafficSplitter(old_url="http://127.0.0.1:1", new_url="http://127.0.0.1:2", state_path=state)
    assert splitter.weight == 0 and [splitter.choose() for _ in range(100)].count("new") == 0
    for weight in (1, 10, 50, 100):
        write_state(state, weight, by="test")
        splitter.reload()
        picks = [splitter.choose() for _ in range(200)]
        assert picks.count("new") == 2 * weight, weight
        assert "new" not in picks[:100 // weight - 1] or weight == 100, "the new share is spread, not bunched"
    state.write_text("{not json")
    splitter.reload()
    assert splitter.weight == 0 and "not a readable cutover state file" in splitter.state_error, "an unreadable state goes back"


# -- the DNS workflow: a step is a pull request; both directions are configuration ------------------------------------


DNS_PLAN = """\
old: {{url: {old}, name: {old_name}}}
new: {{url: {new}, name: {new_name}}}
traffic: {{via: dns, stack: {stack}, settings: cutover.env}}
window_s: 0
gates: {{healthy: {{timeout_s: 2}}}}
steps: [0, 10, 100]
"""


@pytest.mark.parametrize("stack, old_name, new_name", [("aws", "gcp", "aws"), ("gcp", "aws", "gcp"), ("aws", "onprem-serve", "aws")])
def test_dns_plans_gate_the_proposed_weight_and_roll_back_by_writing_the_setting(tmp_path, capsys, stack, old_name, new_name):
    """GCP -> AWS and AWS -> GCP (and a `lepton serve` host as the old side): the same plan with other names and stack."""
    dead = f"http://127.0.0.1:{_closed_port()}"
    path = _write(tmp_path, "plan.yaml", DNS_PLAN.format(old="http://127.0.0.1:9", new=dead, old_name=old_name,
                                                         new_name=new_name, stack=stack))
    plan = load_plan(path)
    assert (plan.traffic.stack, plan.traffic.stack_name) == (stack, f"lepton-{stack}") and current_percent(plan) == 0
    assert gated_step(plan, 0) is None and gated_step(plan, 10).percent == 0

    # the pull request proposes 10%: CI's check measures the 0% step's gates, and the new endpoint is down
    (tmp_path / "cutover.env").write_text("LEPTON_CUTOVER_WEIGHT=10\n")
    assert main(["cutover", "check", str(path)]) == 1
    captured = capsys.readouterr()
    assert "FAIL healthy: new endpoint " + new_name in captured.out
    assert captured.err.count("\n") == 1 and captured.err.startswith(
        "error: gate 'healthy' failed at the 0% step, so the cutover must not move to 10%: new endpoint")

    # a weight that is not a step of the plan is refused, naming the steps
    (tmp_path / "cutover.env").write_text("LEPTON_CUTOVER_WEIGHT=30\n")
    with pytest.raises(PlanError, match=r"30% is not a step of this plan \(0 -> 10 -> 100\)"):
        check(plan)

    # the way back is one command, never gated, and says how to apply it
    assert main(["cutover", "rollback", str(path)]) == 0
    out = capsys.readouterr().out
    assert read_weight_setting(tmp_path / "cutover.env") == 0
    assert f"rolled back to 0% (every caller on {old_name}" in out and f"cdktf deploy lepton-{stack}" in out
    assert main(["cutover", "check", str(path), "--json"]) == 0, "moving to 0% is never gated"
    assert json.loads(capsys.readouterr().out) == {"to_percent": 0, "passed": True, "check": None}
    assert rollback(plan).percent == 0


def test_dns_plans_are_not_run_by_the_splitter_loop(tmp_path):
    from lepton_cdk.cutover.steps import run

    path = _write(tmp_path, "plan.yaml", DNS_PLAN.format(old="http://127.0.0.1:9", new="http://127.0.0.1:10", old_name="a",
                                                         new_name="b", stack="aws"))
    with pytest.raises(CutoverError, match="each step is a pull request changing LEPTON_CUTOVER_WEIGHT"):
        run(load_plan(path))


def test_advance_moves_one_step_at_a_time_and_never_backwards(tmp_path):
    from lepton_cdk.cutover.steps import advance

    plan = load_plan(_yaml_plan(tmp_path))
    write_state(plan.traffic.state, 10, by="test")
    with pytest.raises(CutoverError, match="going from 10% back to 1% is a rollback: run `lepton cutover rollback`"):
        advance(plan, 1)
    with pytest.raises(CutoverError, match="the next step after 10% is 50%, not 100%: a cutover moves one step at a time"):
        advance(plan, 100)
    write_state(plan.traffic.state, 30, by="test")
    with pytest.raises(PlanError, match="the traffic is at 30%, which is not a step of this plan"):
        advance(plan)
