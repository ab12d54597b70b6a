"""Everything a stack of lepton-cdk's AWS constructs needs to deploy to an AWS emulator (moto) instead of AWS.

One definition, used by the infra app (``LEPTON_AWS_ENDPOINT``), the
``lepton init`` scaffold's local profile, the examples and the project's own
tests, and public for yours. Each setting exists because the default fails
against an emulator:

- Every service in :data:`AWS_SERVICES` points at the emulator's URL: the
  provider calls each service on its own endpoint, and one left out would go
  to real AWS with the dummy credentials (a bare 403).
- ``s3_use_path_style``: the emulator serves ``http://host:port/bucket``,
  not ``bucket.host``.
- ``skip_credentials_validation``, ``skip_region_validation`` and
  ``skip_metadata_api_check``: no STS check of the dummy credentials, no
  region-name check, no probe of the EC2 instance metadata service.
- ``max_retries = 4``: an API the emulator lacks (DataSync's tag calls)
  fails in seconds (three retries with the SDK's backoff) instead of
  retrying for minutes (the SDK's default, 25), while a request the
  emulator drops under load (a connection reset) still gets retried: with
  2, a CI apply failed when both tries of one ``GetKeyPolicy`` failed, the
  last on a connection cut while its answer was read.
- Not ``skip_requesting_account_id``: the emulator answers the account
  lookup, and with it skipped the provider reads rules that reference a
  security group back as ``<account>/sg-...``, so every re-plan drifts.
- No ``default_tags``: moto copies a launch template's tags into its launch
  data, which Terraform then reports as drift on every plan.
- ``image`` (:data:`MOTO_IMAGE`) for :class:`~lepton_cdk.aws.GpuNodeGroup`,
  whose default reads the Deep Learning AMI from a public SSM parameter the
  emulator does not have.
- ``enforce_tls = False`` over plain ``http://``: a TLS-only bucket policy
  denies every plain-HTTP request, locking the stack out of its own bucket.
  The policy rule that wants it (LEP-S3-1) is then suppressed with that
  reason through the policy Aspect's suppression API
  (:meth:`AwsEmulator.suppress_tls_policy`).

Credentials never appear in the synthesized JSON: Terraform and the clients
read the dummy ones :meth:`AwsEmulator.env` returns from the environment.
Importing this module imports nothing outside the standard library; the
provider is built (and cdktf started) only when :meth:`AwsEmulator.provider`
is called, which needs the ``aws`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from lepton_cdk.core.framework import IConstruct

AWS_SERVICES = ("autoscaling", "cloudwatch", "datasync", "ec2", "elbv2", "events", "iam", "kms", "logs", "route53", "s3", "sagemaker",
                "secretsmanager", "sns", "ssm", "sts")
"""Every AWS service lepton-cdk's AWS constructs call (the provider's endpoint names)."""

MOTO_IMAGE = "ami-1e749f67"
"""An AMI in moto's default image list (Ubuntu), for :class:`~lepton_cdk.aws.GpuNodeGroup`'s ``image``."""

DEFAULT_MOTO_URL = "http://127.0.0.1:5000"
"""Where ``moto_server`` listens when started without options."""

PROFILE_VARIABLE = "LEPTON_PROFILE"
"""Selects where a stack deploys: ``cloud`` (the default: the real cloud) or ``local`` (an emulator)."""

ENDPOINT_VARIABLE = "LEPTON_AWS_ENDPOINT"
"""The emulator's base URL for the ``local`` profile. Default: :data:`DEFAULT_MOTO_URL`."""

PROFILES = ("cloud", "local")

TLS_POLICY_RULE = "LEP-S3-1"
"""The policy rule that wants a TLS-only bucket policy (suppressed on a plain-HTTP emulator)."""


class ProfileError(ValueError):
    """``LEPTON_PROFILE`` or the emulator URL holds a value that cannot be used; the message is one line with the fix."""


def check_endpoint(url: str, name: str = "endpoint") -> str:
    """``url`` without a trailing ``/``, once it is a base URL (``http(s)://host[:port]``); else :class:`ProfileError`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ProfileError(f"{name}={url!r} is not an emulator's base URL: use one like {DEFAULT_MOTO_URL}")
    return url.strip().rstrip("/")


def profile_from_env(environ: Mapping[str, str] | None = None) -> str:
    """``"cloud"`` or ``"local"`` from ``LEPTON_PROFILE`` (unset or empty: ``"cloud"``); anything else raises :class:`ProfileError`."""
    env = os.environ if environ is None else environ
    value = (env.get(PROFILE_VARIABLE) or "cloud").strip().lower() or "cloud"
    if value not in PROFILES:
        raise ProfileError(f"{PROFILE_VARIABLE}={value!r} is not a profile: use cloud (deploy to your account) or local (an emulator)")
    return value


def aws_env(endpoint: str, region: str = "us-east-1") -> dict[str, str]:
    """Environment for AWS clients and Terraform talking to the emulator at ``endpoint``.

    Dummy credentials, the region, no real config or credential files, no
    instance metadata probe, no proxy for loopback, and ``AWS_ENDPOINT_URL``
    (which boto3 and the AWS CLI honour).
    """
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "AWS_ENDPOINT_URL": endpoint,
    }


def boto3_client(service: str, endpoint: str, region: str = "us-east-1") -> Any:
    """A boto3 client for ``service`` on the emulator at ``endpoint``, with the dummy credentials (needs boto3).

    Each client gets a session of its own: boto3's default session must not
    be set up from two threads at once, and the user's own profile stays out.
    """
    import boto3

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)
    return session.client(service, endpoint_url=endpoint)


@dataclass(frozen=True)
class AwsEmulator:
    """An AWS emulator every service is reached on, and the settings a stack needs to deploy there.

    ::

        emulator = AwsEmulator("http://127.0.0.1:5000")      # or AwsEmulator.from_env() for LEPTON_PROFILE=local
        emulator.provider(stack)                               # instead of AwsProvider(stack, "aws", region=...)
        bucket = ModelBucket(stack, "Models", enforce_tls=emulator.enforce_tls)
        emulator.suppress_tls_policy(bucket)
        GpuNodeGroup(stack, "Gpu", model=bucket.upload_artifacts(manifest), image=emulator.image)

    :param endpoint: the emulator's base URL (``http://127.0.0.1:5000``).
    :param region: the region the stack deploys to. Default: ``us-east-1``.
    :param image: the AMI for GPU nodes. Default: :data:`MOTO_IMAGE`, one moto knows.
    """

    endpoint: str
    region: str = "us-east-1"
    image: str = MOTO_IMAGE

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoint", check_endpoint(self.endpoint))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, region: str = "us-east-1") -> AwsEmulator | None:
        """The emulator for ``LEPTON_PROFILE=local`` (at ``LEPTON_AWS_ENDPOINT``, default :data:`DEFAULT_MOTO_URL`), or None for ``cloud``.

        :raises ProfileError: an unknown profile, or an endpoint that is not a base URL (one line naming the variable).
        """
        env = os.environ if environ is None else environ
        if profile_from_env(env) != "local":
            return None
        endpoint = (env.get(ENDPOINT_VARIABLE) or "").strip() or DEFAULT_MOTO_URL
        return cls(check_endpoint(endpoint, ENDPOINT_VARIABLE), region=region)

    @property
    def enforce_tls(self) -> bool:
        """False on a plain-HTTP emulator (a TLS-only bucket policy would lock the stack out); True over https."""
        return not self.endpoint.startswith("http://")

    @property
    def tls_policy_reason(self) -> str:
        """Why the TLS-only policy is off here: the reason :meth:`suppress_tls_policy` records."""
        return (f"{self.endpoint} is a plain-HTTP emulator: a TLS-only bucket policy would lock the stack out of its own bucket; "
                "real AWS keeps the policy")

    def provider_settings(self) -> dict[str, Any]:
        """The AWS provider's arguments for this emulator, as keyword arguments (``endpoints`` as a plain dict)."""
        return {
            "region": self.region,
            "endpoints": dict.fromkeys(AWS_SERVICES, self.endpoint),
            "s3_use_path_style": True,
            "skip_credentials_validation": True,
            "skip_metadata_api_check": "true",
            "skip_region_validation": True,
            "max_retries": 4,
        }

    def provider(self, scope: IConstruct, id: str = "aws", **overrides: Any) -> Any:
        """An ``AwsProvider`` in ``scope`` configured for this emulator (:meth:`provider_settings`).

        :param overrides: further ``AwsProvider`` arguments (``alias=...``), or replacements for the settings.
        """
        from lepton_cdk.core.framework import aws

        p = aws.provider
        settings = {**self.provider_settings(), **overrides}
        endpoints = settings.pop("endpoints")
        if isinstance(endpoints, Mapping):
            endpoints = [p.AwsProviderEndpoints(**endpoints)]
        return p.AwsProvider(scope, id, endpoints=endpoints, **settings)

    def suppress_tls_policy(self, *constructs: IConstruct) -> None:
        """Suppress the TLS-only bucket policy rule (LEP-S3-1) on ``constructs``, with the reason, on a plain-HTTP emulator.

        Over https it does nothing: the buckets keep their policy and the rule stays in force.
        """
        if self.enforce_tls:
            return
        from lepton_cdk.checks import PolicyChecks

        for construct in constructs:
            if construct is not None:
                PolicyChecks.suppress(construct, TLS_POLICY_RULE, reason=self.tls_policy_reason)

    def env(self) -> dict[str, str]:
        """Environment for Terraform and AWS clients talking to this emulator (:func:`aws_env`)."""
        return aws_env(self.endpoint, self.region)

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` on this emulator (needs boto3)."""
        return boto3_client(service, self.endpoint, self.region)
