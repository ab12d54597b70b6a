"""Local servers for integration tests: lepton_cdk.testing's starters and AWS client settings (the ones users get), plus
the names these tests grew up with (``MOTO_AMI_ID``)."""

from __future__ import annotations

from lepton_cdk.testing import (
    MOTO_IMAGE,
    EmulatorError,
    MotoServer,
    Server,
    aws_env,
    boto3_client,
    free_port,
    start_gcs_emulator,
    start_moto,
    start_server,
    wait_for_http,
)

# An Ubuntu AMI in moto's default image list.
MOTO_AMI_ID = MOTO_IMAGE

__all__ = ["MOTO_AMI_ID", "EmulatorError", "MotoServer", "Server", "aws_env", "boto3_client", "free_port", "start_gcs_emulator",
           "start_moto", "start_server", "wait_for_http"]
