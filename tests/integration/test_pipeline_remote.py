"""``lepton pipeline run --remote sagemaker`` submits a real CreateTrainingJob call, here to moto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.emulators import aws_env, boto3_client

CONFIG = """
data:
  source: s3://lepton-data/credit/source.csv
  target: s3://lepton-data/credit/target.csv
train:
  strategy: adapter
remote:
  role_arn: arn:aws:iam::123456789012:role/lepton-train
  instance_type: ml.m5.xlarge
  output_uri: s3://lepton-models/runs/
"""


@pytest.mark.integration
def test_sagemaker_training_job_is_created_from_the_config(moto, tmp_path):
    (tmp_path / "pipeline.yaml").write_text(CONFIG)
    lepton = Path(sys.executable).parent / "lepton"
    env = {**os.environ, **aws_env(moto)}
    dry = subprocess.run([str(lepton), "pipeline", "run", "--config", str(tmp_path / "pipeline.yaml"), "--remote", "sagemaker", "--dry-run"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert dry.returncode == 0, dry.stderr
    request = json.loads(dry.stdout)["request"]
    proc = subprocess.run([str(lepton), "pipeline", "run", "--config", str(tmp_path / "pipeline.yaml"), "--remote", "sagemaker", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    arn = json.loads(proc.stdout)["submitted"]["TrainingJobArn"]
    job = boto3_client("sagemaker", moto).describe_training_job(TrainingJobName=request["TrainingJobName"])
    assert job["TrainingJobArn"] == arn and arn.endswith(f"training-job/{request['TrainingJobName']}")
    assert job["RoleArn"] == "arn:aws:iam::123456789012:role/lepton-train"
    assert job["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert job["OutputDataConfig"]["S3OutputPath"] == "s3://lepton-models/runs/"
    assert [c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]] == [
        "s3://lepton-data/credit/source.csv", "s3://lepton-data/credit/target.csv"]
    assert job["AlgorithmSpecification"]["TrainingImage"] == request["AlgorithmSpecification"]["TrainingImage"]
