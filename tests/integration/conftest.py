"""Fixtures for the integration tests: emulators on 127.0.0.1 and Terraform's CLI config.

Every server starts from a fixture on a free port and stops in its teardown;
nothing needs to be started by hand. The emulator fixtures are
``lepton_cdk.testing.pytest_plugin``'s, the ones users get. Terraform reads providers from the
filesystem mirror (``/opt/tf-plugins`` or ``$LEPTON_TF_PLUGIN_MIRROR``)
through a CLI config file written here, never from the network. Plain
helpers live in ``tests/support/`` (emulators.py, terraform.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# moto_server, moto (reset per test) and gcs_emulator: the fixtures lepton_cdk.testing ships for users' own tests.
from lepton_cdk.testing.pytest_plugin import gcs_emulator, moto, moto_server  # noqa: F401
from tests.support.terraform import terraform_cli_config

PLUGIN_MIRROR = Path(os.environ.get("LEPTON_TF_PLUGIN_MIRROR", "/opt/tf-plugins"))
AWS_PROVIDER_IN_MIRROR = PLUGIN_MIRROR / "registry.terraform.io/hashicorp/aws/5.100.0"


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
