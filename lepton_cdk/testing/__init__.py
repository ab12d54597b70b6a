"""Helpers for testing your own stacks of lepton-cdk constructs: emulator settings, emulators, synth and lookups.

- :class:`AwsEmulator`: an AWS provider configured for moto (every endpoint,
  path-style S3, no credential, region or metadata checks, few retries) and
  the emulator-safe construct settings (an AMI moto knows; the TLS-only
  bucket policy off over plain HTTP, its policy rule suppressed with the
  reason). ``AwsEmulator.from_env()`` reads the ``LEPTON_PROFILE=local``
  profile that ``lepton init`` projects use.
- :func:`start_moto` and :func:`start_gcs_emulator`: the emulators on
  127.0.0.1 (free port), stopped at the end of a ``with`` block.
- :func:`synth_stack`, :func:`synth`, :func:`resources`, :func:`only`,
  :func:`at`, :func:`logical_ids`, :func:`ref`: synthesize as ``cdktf
  synth`` would (validations on, error annotations fail) and look things up
  in the Terraform JSON, in the style of cdktf's ``Testing``.
- :func:`write_test_manifest`: placeholder artifacts and a valid manifest,
  which a stack needs to synthesize.
- :class:`Terraform` and :func:`planned_changes`: apply a synthesized stack
  (to moto), re-plan and name the drift, destroy.

lepton-cdk's own tests use these same helpers, so what is documented here
is what the project relies on. Importing this package needs only the
standard library (no pytest: unittest works as well; cdktf starts on the
first synth); the pytest fixtures are in :mod:`lepton_cdk.testing.pytest_plugin`.
"""

from .aws_emulator import (
    AWS_SERVICES,
    DEFAULT_MOTO_URL,
    ENDPOINT_VARIABLE,
    MOTO_IMAGE,
    PROFILE_VARIABLE,
    TLS_POLICY_RULE,
    AwsEmulator,
    ProfileError,
    aws_env,
    boto3_client,
    check_endpoint,
    profile_from_env,
)
from .emulators import (
    EmulatorError,
    MotoServer,
    Server,
    free_port,
    gcs_env,
    reset_moto,
    start_gcs_emulator,
    start_moto,
    start_server,
    wait_for_http,
)
from .manifests import PLACEHOLDER_MODEL, write_test_manifest
from .synthesis import SynthError, at, logical_ids, only, ref, resources, synth, synth_stack, synthesized_stacks
from .terraform import Terraform, TerraformError, planned_changes, terraform_cli_config

__all__ = [
    "AwsEmulator", "AWS_SERVICES", "MOTO_IMAGE", "DEFAULT_MOTO_URL", "PROFILE_VARIABLE", "ENDPOINT_VARIABLE", "TLS_POLICY_RULE",
    "ProfileError", "profile_from_env", "check_endpoint", "aws_env", "boto3_client",
    "start_moto", "start_gcs_emulator", "reset_moto", "gcs_env", "MotoServer", "Server", "EmulatorError", "start_server",
    "wait_for_http", "free_port",
    "write_test_manifest", "PLACEHOLDER_MODEL",
    "synth_stack", "synth", "SynthError", "synthesized_stacks", "resources", "only", "at", "logical_ids", "ref",
    "Terraform", "TerraformError", "planned_changes", "terraform_cli_config",
]
