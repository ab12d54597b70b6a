"""The `lepton` command as a user runs it: a real process, its output and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lepton_cdk.contract import read_manifest

REPO = Path(__file__).resolve().parents[2]


def lepton(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script's entry point in a fresh process, under CI-style plain output."""
    full_env = {**os.environ, "CI": "true", **(env or {})}
    return subprocess.run([sys.executable, "-m", "lepton_cdk.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = lepton("demo", "--quick", "--out", str(out), "--json")
    return out, proc


def test_demo_runs_the_whole_loop_and_wires_the_manifest_into_the_stack(quick_demo):
    out, proc = quick_demo
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    manifest = read_manifest(out / "manifest.json", verify=True)  # schema valid, every checksum matches
    assert manifest.parity.passed and manifest.parity.rows_checked > 0
    assert {"source_only", "fine_tuned"} <= set(summary["metrics"])
    [stack] = summary["stacks"]
    tf = json.loads((out / "cdktf.out" / "stacks" / stack["name"] / "cdk.tf.json").read_text())
    objects = tf["resource"]["aws_s3_object"]
    # every manifest artifact is uploaded, keyed by the manifest's sha256
    assert sorted(o["source_hash"] for o in objects.values()) == sorted(a.sha256 for a in manifest.artifacts)
    assert stack["resources"] == sum(len(v) for v in tf["resource"].values())


def test_demo_shows_progress_as_plain_lines_under_ci(quick_demo):
    _, proc = quick_demo
    stages = [ln for ln in proc.stderr.splitlines() if "✓" in ln]
    assert any("Model pipeline" in ln for ln in stages) and any("Synthesizing" in ln for ln in stages)
    assert "\x1b[" not in proc.stderr  # no terminal control codes in CI logs


def test_demo_prints_a_readable_summary(tmp_path):
    proc = lepton("demo", "--quick", "--target", "gcp", "--out", str(tmp_path / "gcp"))
    assert proc.returncode == 0, proc.stderr
    assert "parity      passed" in proc.stdout
    assert "google_storage_bucket" in proc.stdout and "google_compute_region_instance_group_manager" in proc.stdout
    assert "fine_tuned" in proc.stdout and "source_only" in proc.stdout
    stack_block = proc.stdout.split("  stack ", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(stack_block) > 1 and all(len(line) <= 100 for line in stack_block), "the resource list wraps at 100 columns"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--lambda", "-1"], "lambda_"),
        (["--seed", "-5"], "seed"),
    ],
)
def test_out_of_range_values_fail_before_anything_is_written(tmp_path, args, message):
    out = tmp_path / "out"
    proc = lepton("demo", "--quick", "--out", str(out), *args)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_unknown_target_is_a_usage_error(tmp_path):
    proc = lepton("demo", "--target", "azure", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "azure" in proc.stderr and "aws" in proc.stderr


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_failed_synth_keeps_the_previous_model_manifest_and_stack_together(quick_demo, tmp_path):
    out, _ = quick_demo
    before = _files(out)
    # another seed trains another model; only the synth, which validates LEPTON_*, fails
    proc = lepton("demo", "--quick", "--seed", "8", "--out", str(out), env={"LEPTON_AWS_REGION": "not a region"})
    assert proc.returncode == 1
    assert "LEPTON_AWS_REGION" in proc.stderr.strip().splitlines()[-1]
    # the new model was never published without its stack: every byte, hidden entries included, is as before
    assert _files(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_manifest_verify_accepts_a_good_manifest_and_names_a_tampered_artifact(pipeline_out, tmp_path):
    ok = lepton("manifest", "verify", str(pipeline_out), "--json")
    assert ok.returncode == 0, ok.stderr
    assert "model" in json.loads(ok.stdout)["artifacts_verified"]

    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(pipeline_out), str(copy)], check=True)
    model = copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    bad = lepton("manifest", "verify", str(copy))
    assert bad.returncode == 1
    [line] = bad.stderr.strip().splitlines()
    assert "artifact 'model'" in line and "sha256" in line


def test_wrong_schema_version_gets_one_line(pipeline_out, tmp_path):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(pipeline_out), str(copy)], check=True)
    doc = json.loads((copy / "manifest.json").read_text())
    doc["schema_version"] = "9.0.0"
    (copy / "manifest.json").write_text(json.dumps(doc))
    proc = lepton("manifest", "verify", str(copy / "manifest.json"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: manifest {copy / 'manifest.json'} has schema_version 9.0.0 but this lepton-cdk reads major version 1; "
        "upgrade lepton-cdk so the versions match"
    )


def test_version_flag():
    proc = lepton("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("lepton-cdk ")


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "lepton"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "demo" in proc.stdout


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "data file not found"),
        ("", "is empty"),
        ('age,annual_income\n1,2\n"unterminated\n', "cannot parse"),
        ("age,annual_income\n30,50000\n", "no label column 'default'"),
    ],
)
def test_bad_data_files_get_one_line_and_write_nothing(tmp_path, content, message):
    data = tmp_path / "source.csv"
    if content is not None:
        data.write_text(content)
    out = tmp_path / "out"
    proc = lepton("demo", "--quick", "--out", str(out), "--source-data", str(data), "--target-data", str(data))
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and str(data) in last
    assert "Traceback" not in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [data] * (content is not None)


def test_source_data_without_target_data_is_a_usage_error(tmp_path):
    proc = lepton("demo", "--source-data", str(tmp_path / "a.csv"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "--target-data" in proc.stderr
