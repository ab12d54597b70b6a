"""The user's path: the repo-local ``cdktf`` CLI deploys the app from ``cdktf.json`` against moto,
writes the outputs file the pipeline reads, then destroys.

It runs in a scratch project folder (``cdktf.json`` plus links to ``infra/``,
``lepton_cdk/`` and ``.venv/``), so no ``cdktf.out`` or state is left in the
repository, and with its own HOME, so nothing is written to the user's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from lepton_cdk.contract import read_manifest, read_outputs
from tests.support.emulators import MOTO_AMI_ID, aws_env, boto3_client
from tests.support.terraform import REPO_ROOT, retried_create_race, tool_env

pytestmark = pytest.mark.integration

CDKTF = REPO_ROOT / "node_modules" / ".bin" / "cdktf"
STACK = "lepton-aws"


def _cdktf(args, *, cwd, env, timeout_s=600, check=True) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run([str(CDKTF), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    elapsed = round(time.monotonic() - started, 1)
    if check and proc.returncode != 0:
        pytest.fail(f"cdktf {' '.join(args)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-6000:]}")
    return proc, elapsed


def _deploy(args, *, cwd, env, tf_log) -> float:
    """``cdktf deploy``; once more after a destroy when (and only when) it lost the emulator's retried-create race.

    Terraform's debug log goes to ``tf_log``, so a failure shows which AWS SDK attempts the failing operation made.
    """
    env = {**env, "TF_LOG": "DEBUG", "TF_LOG_PATH": str(tf_log)}
    proc, elapsed = _cdktf(args, cwd=cwd, env=env, check=False)
    if proc.returncode == 0:
        return elapsed
    output = proc.stdout + proc.stderr
    race = retried_create_race(output, tf_log)
    if race is None:
        pytest.fail(f"cdktf {' '.join(args)} exited {proc.returncode} (Terraform's debug log: {tf_log}):\n{output[-6000:]}")
    print(f"\ncdktf deploy lost the emulator's retried-create race ({race}); destroying and deploying again")
    _cdktf(["destroy", STACK, "--auto-approve"], cwd=cwd, env=env)
    _, again = _cdktf(args, cwd=cwd, env={**env, "TF_LOG_PATH": str(tf_log.with_suffix(".again.log"))})
    return elapsed + again


def test_cdktf_deploy_writes_outputs_the_pipeline_reads_and_destroy_cleans_up(pipeline_out, moto, tf_cli_config, tmp_path):
    if not CDKTF.exists():
        pytest.skip("node_modules/.bin/cdktf is missing: run `make setup` (npm ci)")
    if shutil.which("node") is None:
        pytest.skip("Node.js is not on PATH")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "cdktf.json", project / "cdktf.json")
    for name in ("infra", "lepton_cdk", ".venv"):
        (project / name).symlink_to(REPO_ROOT / name, target_is_directory=True)
    (tmp_path / "home").mkdir()

    env = tool_env({
        **aws_env(moto),
        "HOME": str(tmp_path / "home"),
        "CI": "1",
        "FORCE_COLOR": "0",
        "TF_CLI_CONFIG_FILE": str(tf_cli_config),
        "CDKTF_DISABLE_PLUGIN_CACHE_ENV": "true",
        "LEPTON_MANIFEST": str(pipeline_out / "manifest.json"),
        "LEPTON_TARGET": "aws",
        "LEPTON_AWS_ENDPOINT": moto,
        "LEPTON_RETAIN_DATA": "false",
        "LEPTON_IMAGE_ID": MOTO_AMI_ID,
        "LEPTON_STATE_DIR": str(tmp_path / "state"),
    })
    outputs_file = tmp_path / "outputs.json"
    deploy_s = _deploy(["deploy", STACK, "--auto-approve", "--skip-provider-lock", "--outputs-file", str(outputs_file)], cwd=project, env=env,
                       tf_log=tmp_path / "terraform-deploy.log")

    manifest = read_manifest(pipeline_out / "manifest.json")
    outputs = read_outputs(outputs_file)[STACK]
    bucket = outputs.get("bucket_name")
    prefix = f"models/{manifest.model_name}/{manifest.model_version}/"
    assert outputs.get("model_uri") == f"s3://{bucket}/{prefix}{manifest.model_artifact.path}"
    assert outputs.get("model_sha256") == manifest.model_artifact.sha256
    s3 = boto3_client("s3", moto)
    head = s3.head_object(Bucket=bucket, Key=prefix + manifest.model_artifact.path)
    assert head["Metadata"]["sha256"] == manifest.model_artifact.sha256
    assert (tmp_path / "state" / f"terraform.{STACK}.tfstate").is_file()
    assert (project / "cdktf.out" / "stacks" / STACK / "cdk.tf.json").is_file()

    _, destroy_s = _cdktf(["destroy", STACK, "--auto-approve"], cwd=project, env=env)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert not list(REPO_ROOT.glob("terraform.*.tfstate*")) and not (REPO_ROOT / "cdktf.out").exists()
    print(f"\ncdktf CLI against moto, seconds: {json.dumps({'deploy': deploy_s, 'destroy': destroy_s})}")
