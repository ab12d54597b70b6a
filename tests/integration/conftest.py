"""Fixtures for the integration tests: emulators on 127.0.0.1 and Terraform's CLI config.

Every server starts from a fixture on a free port and stops in its teardown;
nothing needs to be started by hand. Terraform reads providers from the
filesystem mirror (``/opt/tf-plugins`` or ``$LEPTON_TF_PLUGIN_MIRROR``)
through a CLI config file written here, never from the network. Plain
helpers live in ``tests/support/`` (emulators.py, terraform.py).
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.emulators import free_port, start_server
from tests.support.terraform import terraform_cli_config

VENV_BIN = Path(sys.executable).parent
PLUGIN_MIRROR = Path(os.environ.get("LEPTON_TF_PLUGIN_MIRROR", "/opt/tf-plugins"))
AWS_PROVIDER_IN_MIRROR = PLUGIN_MIRROR / "registry.terraform.io/hashicorp/aws/5.100.0"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[str]:
    """A ``moto_server`` on 127.0.0.1 (free port) for the session; yields its base URL."""
    port = free_port()
    server = start_server(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        url=f"http://127.0.0.1:{port}", ready_path="/moto-api/", log=tmp_path_factory.mktemp("moto") / "moto.log",
    )
    yield server.url
    server.stop()


@pytest.fixture
def moto(moto_server: str) -> str:
    """The session's moto endpoint, emptied before the test."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10).close()
    return moto_server


def _missing(reason: str) -> None:
    """Skip on a developer's machine; fail under CI, where a silently skipped apply would hide a broken setup."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the real terraform apply")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def tf_cli_config(tmp_path_factory) -> Path:
    """A Terraform CLI config file that installs providers only from the filesystem mirror."""
    if shutil.which("terraform") is None:
        _missing("terraform is not on PATH (the integration tests need Terraform >= 1.5)")
    if not AWS_PROVIDER_IN_MIRROR.is_dir():
        _missing(f"the AWS provider 5.100.0 is not in the filesystem mirror {PLUGIN_MIRROR} (set LEPTON_TF_PLUGIN_MIRROR)")
    path = tmp_path_factory.mktemp("terraform") / "terraform.rc"
    path.write_text(terraform_cli_config(PLUGIN_MIRROR))
    return path


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory) -> Iterator[str]:
    """``gcp-storage-emulator`` on 127.0.0.1 (free port, in memory) for the session; yields its base URL."""
    port = free_port()
    server = start_server(
        [str(VENV_BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        url=f"http://127.0.0.1:{port}", ready_path="/storage/v1/b", log=tmp_path_factory.mktemp("gcs") / "gcs.log",
    )
    yield server.url
    server.stop()
