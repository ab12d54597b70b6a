"""The infra app's settings, read from ``LEPTON_*`` environment variables.

Every setting has a default. A bad value fails before anything is synthesized, with one line naming the
variable, the value and the fix. Standard library only: reading the config
does not start jsii.

==========================  ==============================  =================================================
variable                    default                         meaning
==========================  ==============================  =================================================
LEPTON_MANIFEST             build/demo/manifest.json        the model manifest to deploy (file or its folder)
LEPTON_TARGET               aws                             aws, gcp or all: which stacks to synthesize
LEPTON_STACK_PREFIX         lepton                          stack names are ``<prefix>-aws`` / ``<prefix>-gcp``
LEPTON_RETAIN_DATA          true                            false lets ``destroy`` delete buckets and keys
LEPTON_STATE_DIR            (project root)                  folder for the local backend's state files
LEPTON_AWS_REGION           us-east-1                       AWS region
LEPTON_AWS_ENDPOINT         (real AWS)                      an emulator URL (moto) for every AWS service
LEPTON_AWS_INSTANCE_TYPE    g5.xlarge                       GPU instance type
LEPTON_IMAGE_ID             (Deep Learning AMI via SSM)     AMI for the AWS GPU nodes
LEPTON_NODE_COUNT           1                               GPU nodes to run (AWS and GCP)
LEPTON_GCP_PROJECT          (GOOGLE_PROJECT at plan time)   GCP project id (unset: the provider's default)
LEPTON_GCP_REGION           us-central1                     GCP region
LEPTON_GCP_MACHINE_TYPE     g2-standard-4                   GCP machine type (with one NVIDIA L4)
LEPTON_SPOT                 false                           true runs the GPU nodes on Spot capacity
LEPTON_ALERT_EMAILS         (none)                          comma-separated addresses alarms notify (AWS: the
                                                            topic exists without any; GCP: no alert policies)
LEPTON_MANAGED_ENDPOINT     false                           true adds a SageMaker endpoint (AWS stack only)
LEPTON_SAGEMAKER_TYPE       ml.g5.xlarge                    its instance type
LEPTON_SOURCE_URI           (no transfer)                   data to copy into a new data bucket: gs://bucket/
                                                            [prefix/] feeds the AWS stack (DataSync),
                                                            s3://bucket/[prefix/] the GCP stack (Storage Transfer)
LEPTON_SOURCE_HMAC_SECRET   (with gs://)                    Secrets Manager secret with the GCS HMAC key (JSON)
LEPTON_DATASYNC_AGENTS      (with gs://)                    comma-separated DataSync agent ARNs
LEPTON_SOURCE_ROLE_ARN      (with s3://)                    IAM role Storage Transfer Service assumes (federation)
LEPTON_TRANSFER_MODE        incremental                     full or incremental
LEPTON_CUTOVER_DNS          (no traffic split)              aws or gcp: the stack whose DNS (Route 53 weighted
                                                            records / Cloud DNS WRR) puts one name in front of the
                                                            old and the new endpoint
LEPTON_CUTOVER_ZONE         (with LEPTON_CUTOVER_DNS)       Route 53 hosted zone id / Cloud DNS managed zone name
LEPTON_CUTOVER_RECORD       (with LEPTON_CUTOVER_DNS)       the name callers use, e.g. model.internal.example.com
LEPTON_CUTOVER_OLD_ENDPOINT (that stack's serving)          URL or address traffic moves from
LEPTON_CUTOVER_NEW_ENDPOINT (that stack's serving)          URL or address traffic moves to (set at least one of
                                                            the two; the unset one is that stack's load balancer)
LEPTON_CUTOVER_WEIGHT       0                               percent of answers naming the new endpoint (0-100):
                                                            the one setting a cutover step changes
==========================  ==============================  =================================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TARGETS = ("aws", "gcp")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
_GCP_REGION = re.compile(r"^[a-z]+-[a-z]+\d$")
_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_STACK_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_AMI = re.compile(r"^ami-[0-9a-f]{8,17}$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_SAGEMAKER_TYPE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
# Which target stack a source feeds: data in Cloud Storage moves to AWS, data in S3 to GCP.
SOURCE_TARGET = {"gs": "aws", "s3": "gcp"}


class ConfigError(ValueError):
    """An environment variable holds a value the infra app cannot use."""


def _bad(name: str, value: str, fix: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is not valid: {fix}")


@dataclass(frozen=True)
class TransferSource:
    """``LEPTON_SOURCE_URI`` and its credentials: the other cloud's bucket to copy into the target's data bucket."""

    scheme: str  # "gs" (feeds the AWS stack) or "s3" (feeds the GCP stack)
    bucket: str
    prefix: str = ""  # "" or ending in "/"
    hmac_secret_id: str | None = None  # gs://
    agent_arns: tuple[str, ...] = ()  # gs://
    role_arn: str | None = None  # s3://

    @property
    def target(self) -> str:
        """The target cloud this source feeds: ``aws`` for ``gs://``, ``gcp`` for ``s3://``."""
        return SOURCE_TARGET[self.scheme]


@dataclass(frozen=True)
class TrafficSplitSettings:
    """``LEPTON_CUTOVER_*``: one DNS name in front of the old and the new endpoint, split by weight (a cutover step)."""

    dns: str  # "aws" (Route 53) or "gcp" (Cloud DNS): the stack that declares the records
    zone: str
    record_name: str
    old_endpoint: str | None = None  # None: the DNS stack's own serving load balancer
    new_endpoint: str | None = None
    weight_percent: int = 0  # percent of answers naming the new endpoint


@dataclass(frozen=True)
class InfraConfig:
    """Everything the infra app needs to build its stacks."""

    manifest_path: Path = Path("build/demo/manifest.json")
    targets: tuple[str, ...] = ("aws",)
    stack_prefix: str = "lepton"
    retain_data: bool = True
    state_dir: Path | None = None
    aws_region: str = "us-east-1"
    aws_endpoint: str | None = None
    aws_instance_type: str = "g5.xlarge"
    image_id: str | None = None
    node_count: int = 1
    gcp_project: str | None = None
    gcp_region: str = "us-central1"
    gcp_machine_type: str = "g2-standard-4"
    spot: bool = False
    alert_emails: tuple[str, ...] = ()
    managed_endpoint: bool = False
    sagemaker_instance_type: str = "ml.g5.xlarge"
    source: TransferSource | None = None
    transfer_mode: str = "incremental"
    traffic_split: TrafficSplitSettings | None = None

    def stack_name(self, target: str) -> str:
        """``<prefix>-<target>``."""
        return f"{self.stack_prefix}-{target}"

    def state_file(self, target: str) -> str | None:
        """Absolute path of the target's local state file, or None for cdktf's default (the project root)."""
        if self.state_dir is None:
            return None
        return str((self.state_dir / f"terraform.{self.stack_name(target)}.tfstate").resolve())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InfraConfig:
        """Read and check every ``LEPTON_*`` variable; raises :class:`ConfigError` on the first bad one."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value is not None and value.strip() != "" else None

        def flag(name: str, default: bool) -> bool:
            raw = get(name)
            if raw is None:
                return default
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise _bad(name, raw, "use true or false")

        target = (get("LEPTON_TARGET") or "aws").lower()
        if target == "all":
            targets = TARGETS
        elif target in TARGETS:
            targets = (target,)
        else:
            raise _bad("LEPTON_TARGET", target, "use aws, gcp or all")

        prefix = get("LEPTON_STACK_PREFIX") or "lepton"
        if not _STACK_PREFIX.match(prefix):
            raise _bad("LEPTON_STACK_PREFIX", prefix, "use 1-31 lowercase letters, digits or '-', starting with a letter")

        aws_region = get("LEPTON_AWS_REGION") or "us-east-1"
        if not _AWS_REGION.match(aws_region):
            raise _bad("LEPTON_AWS_REGION", aws_region, "use an AWS region code such as us-east-1 or eu-west-1")

        endpoint = get("LEPTON_AWS_ENDPOINT")
        if endpoint is not None:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
                raise _bad("LEPTON_AWS_ENDPOINT", endpoint, "use the emulator's base URL, e.g. http://127.0.0.1:5000, or unset it for real AWS")
            endpoint = endpoint.rstrip("/")

        image_id = get("LEPTON_IMAGE_ID")
        if image_id is not None and not _AMI.match(image_id):
            raise _bad("LEPTON_IMAGE_ID", image_id, "use an AMI id such as ami-0123456789abcdef0, or unset it for the Deep Learning AMI")

        raw_count = get("LEPTON_NODE_COUNT") or "1"
        if not raw_count.isdigit() or not 0 <= int(raw_count) <= 100:
            raise _bad("LEPTON_NODE_COUNT", raw_count, "use a whole number from 0 to 100")

        gcp_project = get("LEPTON_GCP_PROJECT")
        if gcp_project is not None and not _GCP_PROJECT.match(gcp_project):
            raise _bad("LEPTON_GCP_PROJECT", gcp_project, "use a GCP project id: 6-30 lowercase letters, digits or '-', starting with a letter")
        gcp_region = get("LEPTON_GCP_REGION") or "us-central1"
        if not _GCP_REGION.match(gcp_region):
            raise _bad("LEPTON_GCP_REGION", gcp_region, "use a GCP region such as us-central1 or europe-west4")

        emails = tuple(e.strip() for e in (get("LEPTON_ALERT_EMAILS") or "").split(",") if e.strip())
        for email in emails:
            if not _EMAIL.match(email):
                raise _bad("LEPTON_ALERT_EMAILS", get("LEPTON_ALERT_EMAILS") or "", f"{email!r} is not an e-mail address; use comma-separated addresses")
        sagemaker_type = get("LEPTON_SAGEMAKER_TYPE") or "ml.g5.xlarge"
        if not _SAGEMAKER_TYPE.match(sagemaker_type):
            raise _bad("LEPTON_SAGEMAKER_TYPE", sagemaker_type, "use a SageMaker instance type such as ml.g5.xlarge")
        transfer_mode = (get("LEPTON_TRANSFER_MODE") or "incremental").lower()
        if transfer_mode not in ("full", "incremental"):
            raise _bad("LEPTON_TRANSFER_MODE", transfer_mode, "use full or incremental")
        source = _source_from_env(get, targets)

        state_dir = get("LEPTON_STATE_DIR")
        return cls(
            manifest_path=Path(get("LEPTON_MANIFEST") or "build/demo/manifest.json"),
            targets=targets,
            stack_prefix=prefix,
            retain_data=flag("LEPTON_RETAIN_DATA", True),
            state_dir=Path(state_dir) if state_dir else None,
            aws_region=aws_region,
            aws_endpoint=endpoint,
            aws_instance_type=get("LEPTON_AWS_INSTANCE_TYPE") or "g5.xlarge",
            image_id=image_id,
            node_count=int(raw_count),
            gcp_project=gcp_project,
            gcp_region=gcp_region,
            gcp_machine_type=get("LEPTON_GCP_MACHINE_TYPE") or "g2-standard-4",
            spot=flag("LEPTON_SPOT", False),
            alert_emails=emails,
            managed_endpoint=flag("LEPTON_MANAGED_ENDPOINT", False),
            sagemaker_instance_type=sagemaker_type,
            source=source,
            transfer_mode=transfer_mode,
            traffic_split=_traffic_split_from_env(get, targets),
        )


def _source_from_env(get: Callable[[str], str | None], targets: tuple[str, ...]) -> TransferSource | None:
    """``LEPTON_SOURCE_URI`` and the settings its scheme needs, checked; None when unset."""
    uri = get("LEPTON_SOURCE_URI")
    if uri is None:
        for name in ("LEPTON_SOURCE_HMAC_SECRET", "LEPTON_DATASYNC_AGENTS", "LEPTON_SOURCE_ROLE_ARN"):
            if get(name) is not None:
                raise _bad(name, get(name) or "", "it only applies with LEPTON_SOURCE_URI; set that too, or unset this")
        return None
    scheme, sep, rest = uri.partition("://")
    bucket, _, prefix = rest.partition("/")
    if not sep or scheme not in SOURCE_TARGET or not _BUCKET.match(bucket):
        raise _bad("LEPTON_SOURCE_URI", uri, "use gs://<bucket>/[prefix/] (copied into the AWS stack) or s3://<bucket>/[prefix/] (into the GCP stack)")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    target = SOURCE_TARGET[scheme]
    if target not in targets:
        raise _bad("LEPTON_SOURCE_URI", uri, f"{scheme}:// data is copied into the {target} stack, which LEPTON_TARGET does not build; "
                   f"set LEPTON_TARGET={target} or all, or use a {'s3' if scheme == 'gs' else 'gs'}:// source")
    if scheme == "gs":
        secret = get("LEPTON_SOURCE_HMAC_SECRET")
        if secret is None:
            raise _bad("LEPTON_SOURCE_URI", uri, "a gs:// source needs LEPTON_SOURCE_HMAC_SECRET (the Secrets Manager secret holding the "
                       "Cloud Storage HMAC key) and LEPTON_DATASYNC_AGENTS")
        agents = tuple(a.strip() for a in (get("LEPTON_DATASYNC_AGENTS") or "").split(",") if a.strip())
        if not agents:
            raise _bad("LEPTON_SOURCE_URI", uri, "a gs:// source needs LEPTON_DATASYNC_AGENTS: comma-separated ARNs of DataSync agents "
                       "that reach storage.googleapis.com")
        if get("LEPTON_SOURCE_ROLE_ARN") is not None:
            raise _bad("LEPTON_SOURCE_ROLE_ARN", get("LEPTON_SOURCE_ROLE_ARN") or "", "it applies to s3:// sources only; unset it")
        return TransferSource("gs", bucket, prefix, hmac_secret_id=secret, agent_arns=agents)
    role = get("LEPTON_SOURCE_ROLE_ARN")
    if role is None:
        raise _bad("LEPTON_SOURCE_URI", uri, "an s3:// source needs LEPTON_SOURCE_ROLE_ARN, the IAM role Storage Transfer Service assumes")
    if not _ROLE_ARN.match(role):
        raise _bad("LEPTON_SOURCE_ROLE_ARN", role, "use an IAM role ARN such as arn:aws:iam::123456789012:role/lepton-transfer")
    for name in ("LEPTON_SOURCE_HMAC_SECRET", "LEPTON_DATASYNC_AGENTS"):
        if get(name) is not None:
            raise _bad(name, get(name) or "", "it applies to gs:// sources only; unset it")
    return TransferSource("s3", bucket, prefix, role_arn=role)


_CUTOVER_SETTINGS = ("LEPTON_CUTOVER_ZONE", "LEPTON_CUTOVER_RECORD", "LEPTON_CUTOVER_OLD_ENDPOINT", "LEPTON_CUTOVER_NEW_ENDPOINT",
                     "LEPTON_CUTOVER_WEIGHT")


def _traffic_split_from_env(get: Callable[[str], str | None], targets: tuple[str, ...]) -> TrafficSplitSettings | None:
    """``LEPTON_CUTOVER_*`` checked; None when ``LEPTON_CUTOVER_DNS`` is unset."""
    from lepton_cdk.core.routing import WEIGHT_TOTAL, parse_endpoint

    dns = get("LEPTON_CUTOVER_DNS")
    if dns is None:
        for name in _CUTOVER_SETTINGS:
            if get(name) is not None:
                raise _bad(name, get(name) or "", "it only applies with LEPTON_CUTOVER_DNS (aws or gcp, the stack whose DNS splits "
                           "the traffic); set that too, or unset this")
        return None
    dns = dns.lower()
    if dns not in TARGETS:
        raise _bad("LEPTON_CUTOVER_DNS", dns, "use aws (Route 53 weighted records) or gcp (Cloud DNS weighted round robin)")
    if dns not in targets:
        raise _bad("LEPTON_CUTOVER_DNS", dns, f"the {dns} stack declares the records, and LEPTON_TARGET does not build it; set "
                   f"LEPTON_TARGET={dns} or all")
    zone, record = get("LEPTON_CUTOVER_ZONE"), get("LEPTON_CUTOVER_RECORD")
    if zone is None:
        raise _bad("LEPTON_CUTOVER_DNS", dns, "a traffic split needs LEPTON_CUTOVER_ZONE: the Route 53 hosted zone id (aws) or the "
                   "Cloud DNS managed zone name (gcp)")
    if record is None or "." not in record.strip(".") or any(c.isspace() for c in record):
        raise _bad("LEPTON_CUTOVER_RECORD", record or "", "set the fully qualified name callers use, e.g. model.internal.example.com")
    endpoints = {}
    for side in ("OLD", "NEW"):
        name = f"LEPTON_CUTOVER_{side}_ENDPOINT"
        value = get(name)
        if value is not None:
            parsed = parse_endpoint(value, name)
            if isinstance(parsed, str):
                raise ConfigError(parsed)
        endpoints[side] = value
    if endpoints["OLD"] is None and endpoints["NEW"] is None:
        raise _bad("LEPTON_CUTOVER_DNS", dns, "set LEPTON_CUTOVER_OLD_ENDPOINT or LEPTON_CUTOVER_NEW_ENDPOINT (the other one "
                   f"defaults to the {dns} stack's own load balancer)")
    raw_weight = get("LEPTON_CUTOVER_WEIGHT") or "0"
    if not raw_weight.isdigit() or not 0 <= int(raw_weight) <= WEIGHT_TOTAL:
        raise _bad("LEPTON_CUTOVER_WEIGHT", raw_weight, f"use a whole percent from 0 (all traffic on the old endpoint) to "
                   f"{WEIGHT_TOTAL} (all on the new one)")
    return TrafficSplitSettings(dns=dns, zone=zone, record_name=record.rstrip("."), old_endpoint=endpoints["OLD"],
                                new_endpoint=endpoints["NEW"], weight_percent=int(raw_weight))
