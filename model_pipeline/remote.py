"""Remote training requests, built from the same config as a local run.

For data that outgrows one machine the pipeline runs as a cloud training job
whose container runs ``lepton pipeline run`` itself:

* **SageMaker**: the keyword arguments of boto3's ``create_training_job``
  (the CreateTrainingJob API). The source and target tables are input
  channels (``s3://`` URIs) that SageMaker copies to
  ``/opt/ml/input/data/<channel>/``; the run writes to ``/opt/ml/model``,
  which SageMaker uploads to the output path. Network isolation and
  inter-container encryption are on.
* **Vertex AI**: the REST body of ``projects.locations.customJobs.create``
  (a plain dict in the API's JSON shape, so building it needs no
  ``google-cloud-aiplatform``). ``gs://`` data is read through the
  ``/gcs/`` FUSE mount every Vertex AI container has; output goes to
  ``baseOutputDirectory``.

Both requests carry the whole validated config as JSON in
``LEPTON_PIPELINE_CONFIG``. :func:`submit` sends a request with the
ambient credentials (boto3's chain; ``google.auth.default()``).

A model you already have (``--source-model``) travels the same way: an
``s3://`` / ``gs://`` folder (a Hugging Face model) or file (weights for
``--model-factory``) becomes the ``model`` input channel
(``/opt/ml/input/data/model/``) or its ``/gcs/`` path, and ``--source-data``
becomes optional. A ``--model-factory``'s code must be importable in the
training image. An ONNX source needs no training job: run it locally.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

REMOTES = ("vertex", "sagemaker")
_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".onnx")
DEFAULT_INSTANCE = {"vertex": "n1-standard-8", "sagemaker": "ml.m5.2xlarge"}
MAX_RUNTIME_S = 24 * 3600
_JOB_NAME_RE = re.compile(r"[^a-zA-Z0-9-]+")


class RemoteError(ValueError):
    """A remote training request cannot be built or sent; the message names the missing setting and the fix."""


def _config_json(config: Any) -> str:
    doc = config.to_dict()
    for key in ("source_csv", "target_csv", "source_model"):
        doc[key] = None  # the job reads its channels / mounts, passed as flags
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _require(config: Any, scheme: str, remote: str) -> tuple[str | None, str]:
    src, tgt = (str(v) if v is not None else None for v in (config.source_csv, config.target_csv))
    model = str(config.source_model) if config.source_model is not None else None
    if model is not None:
        if model.lower().endswith(".onnx"):
            raise RemoteError(f"--source-model {model} is an ONNX file, served as it is: it needs no training job; "
                              "run `lepton pipeline run --source-model` locally")
        if not model.startswith(scheme):
            raise RemoteError(f"--remote {remote} reads the model from the cloud: give --source-model as a {scheme} URI "
                              f"(got {model!r}); upload the model folder or weights first")
        if not (tgt and tgt.startswith(scheme)) or (src is not None and not src.startswith(scheme)):
            raise RemoteError(f"--remote {remote} reads the data from the cloud: give --target-data (and --source-data, if any) "
                              f"as {scheme} URIs (got {src!r} and {tgt!r}); upload the tables first")
        return src, tgt
    if not (src and tgt and src.startswith(scheme) and tgt.startswith(scheme)):
        raise RemoteError(f"--remote {remote} reads the data from the cloud: give --source-data and --target-data as {scheme} URIs "
                          f"(got {src!r} and {tgt!r}); upload the tables first")
    return src, tgt


def _model_is_file(uri: str) -> bool:
    """A weights or ONNX file (its name ends in one of their suffixes); anything else is a model folder."""
    return uri.lower().endswith(_FILE_SUFFIXES)


def job_name(config: Any, suffix: str) -> str:
    """A job name valid on both clouds: ``<model_name>-<suffix>``, letters, digits and '-', at most 63 characters."""
    return _JOB_NAME_RE.sub("-", f"{config.model_name}-{suffix}")[:63].strip("-")


def _run_args(config: Any, source: str | None, target: str, out: str, model: str | None = None) -> list[str]:
    args = ["pipeline", "run"]
    if model is not None:
        args += ["--source-model", model]
        if config.model_factory:
            args += ["--model-factory", config.model_factory]
    if source is not None:
        args += ["--source-data", source]
    return args + ["--target-data", target, "--label", config.label, "--task", config.task, "--out", out, "--json"]


def sagemaker_request(config: Any, name: str) -> dict[str, Any]:
    """``create_training_job`` keyword arguments for ``config`` (data as ``s3://`` URIs)."""
    source, target = _require(config, "s3://", "sagemaker")
    if not config.remote_role_arn:
        raise RemoteError("--remote sagemaker needs an execution role: set remote.role_arn in the config (the role SageMaker assumes)")
    output = config.remote_output_uri or (source or target).rsplit("/", 1)[0] + "/lepton-output/"
    if not output.startswith("s3://"):
        raise RemoteError(f"remote.output_uri {output!r} must be an s3:// URI for --remote sagemaker")

    def channel(name: str, uri: str, content_type: str | None = None) -> dict[str, Any]:
        doc = {"ChannelName": name, "InputMode": "File",
               "ContentType": content_type or ("text/csv" if uri.endswith(".csv") else "application/x-parquet"),
               "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}}}
        return doc

    tables = [(n, uri) for n, uri in (("source", source), ("target", target)) if uri is not None]
    local = {n: f"/opt/ml/input/data/{n}/{uri.rsplit('/', 1)[-1]}" for n, uri in tables}
    channels = [channel(n, uri) for n, uri in tables]
    model_uri = str(config.source_model) if config.source_model is not None else None
    model_local = None
    if model_uri is not None:
        # SageMaker copies every object under the prefix into the channel's folder, keeping the paths below the prefix
        if _model_is_file(model_uri):
            model_local = f"/opt/ml/input/data/model/{model_uri.rsplit('/', 1)[-1]}"
        else:
            model_uri, model_local = model_uri.rstrip("/") + "/", "/opt/ml/input/data/model"
        channels.append(channel("model", model_uri, "application/octet-stream"))
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": config.remote_image,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["lepton"],
            "ContainerArguments": _run_args(config, local.get("source"), local["target"], "/opt/ml/model", model_local),
        },
        "RoleArn": config.remote_role_arn,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": output},
        "ResourceConfig": {"InstanceType": config.remote_instance_type or DEFAULT_INSTANCE["sagemaker"], "InstanceCount": 1,
                           "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": MAX_RUNTIME_S},
        "Environment": {"LEPTON_PIPELINE_CONFIG": _config_json(config), "CI": "1"},
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "Tags": [{"Key": "managed-by", "Value": "lepton-cdk"}],
    }


def vertex_request(config: Any, name: str) -> dict[str, Any]:
    """``{"method", "url", "body"}`` of a Vertex AI ``customJobs.create`` call for ``config`` (data as ``gs://`` URIs)."""
    source, target = _require(config, "gs://", "vertex")
    if not config.remote_project:
        raise RemoteError("--remote vertex needs a Google Cloud project: set remote.project in the config")
    region = config.remote_region or "us-central1"
    output = config.remote_output_uri or (source or target).rsplit("/", 1)[0] + "/lepton-output/"
    if not output.startswith("gs://"):
        raise RemoteError(f"remote.output_uri {output!r} must be a gs:// URI for --remote vertex")

    def mounted(uri: str) -> str:
        return "/gcs/" + uri.removeprefix("gs://")

    parent = f"projects/{config.remote_project}/locations/{region}"
    body = {
        "displayName": name,
        "jobSpec": {
            "workerPoolSpecs": [{
                "machineSpec": {"machineType": config.remote_instance_type or DEFAULT_INSTANCE["vertex"]},
                "replicaCount": "1",
                "diskSpec": {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 100},
                "containerSpec": {
                    "imageUri": config.remote_image,
                    "command": ["lepton"],
                    # AIP_MODEL_DIR is set by Vertex AI to <baseOutputDirectory>/model
                    "args": _run_args(config, mounted(source) if source is not None else None, mounted(target),
                                      mounted(output.rstrip("/") + "/model"),
                                      mounted(str(config.source_model).rstrip("/")) if config.source_model is not None else None),
                    "env": [{"name": "LEPTON_PIPELINE_CONFIG", "value": _config_json(config)}, {"name": "CI", "value": "1"}],
                },
            }],
            "baseOutputDirectory": {"outputUriPrefix": output},
        },
        "labels": {"managed-by": "lepton-cdk"},
    }
    return {"method": "POST", "url": f"https://{region}-aiplatform.googleapis.com/v1/{parent}/customJobs", "parent": parent, "body": body}


def build_request(config: Any, remote: str, suffix: str = "train") -> dict[str, Any]:
    """The request for ``remote`` (``vertex`` or ``sagemaker``); raises :class:`RemoteError` for a missing setting."""
    if remote not in REMOTES:
        raise RemoteError(f"--remote {remote!r} is not supported; use vertex or sagemaker")
    name = job_name(config, suffix)
    return vertex_request(config, name) if remote == "vertex" else sagemaker_request(config, name)


def submit(remote: str, request: Mapping[str, Any], *, region: str = "us-east-1", endpoint_url: str | None = None) -> dict[str, Any]:
    """Send ``request`` with the ambient credentials; returns the cloud's answer (job ARN / resource name)."""
    if remote == "sagemaker":
        from lepton_cdk.extras import require_extra

        require_extra("submitting to SageMaker", "sagemaker")
        import boto3
        import botocore.exceptions

        client = boto3.client("sagemaker", region_name=region, endpoint_url=endpoint_url)
        try:
            answer = client.create_training_job(**request)
        except botocore.exceptions.NoCredentialsError:
            raise RemoteError("no AWS credentials found; configure them (aws configure / AWS_PROFILE) or use --dry-run") from None
        except botocore.exceptions.ClientError as exc:
            raise RemoteError(f"SageMaker refused the training job: {exc.response['Error'].get('Message', exc)}; fix the request") from None
        return {"TrainingJobArn": answer["TrainingJobArn"]}
    try:
        import google.auth
        import google.auth.exceptions
        from google.auth.transport.requests import AuthorizedSession
    except ImportError:
        raise RemoteError("submitting to Vertex AI needs google-auth (pip install 'lepton-cdk[vertex]'); or use --dry-run") from None
    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except google.auth.exceptions.DefaultCredentialsError:
        raise RemoteError("no Google Cloud credentials found; run `gcloud auth application-default login` or use --dry-run") from None
    response = AuthorizedSession(credentials).post(request["url"], json=request["body"], timeout=60)
    if response.status_code >= 300:
        raise RemoteError(f"Vertex AI refused the custom job (HTTP {response.status_code}: {response.text[:200]}); fix the request")
    return {"name": response.json().get("name", "")}
