"""pytest fixtures for the emulators: enable them with ``pytest_plugins = ["lepton_cdk.testing.pytest_plugin"]`` in your
top-level ``conftest.py`` (or import the fixtures you want into it).

- ``moto_server``: one moto server for the session (:func:`~lepton_cdk.testing.start_moto`); its base URL.
- ``moto``: that URL, after every resource from earlier tests was forgotten (moto's reset).
- ``aws_emulator``: :class:`~lepton_cdk.testing.AwsEmulator` settings for ``moto`` (``us-east-1``).
- ``gcs_emulator``: one Cloud Storage emulator for the session (:func:`~lepton_cdk.testing.start_gcs_emulator`); its base URL.

Each server listens on a free port of 127.0.0.1 and stops when the session
ends. Its output goes to a log file under pytest's temporary folder, which
the error names when it fails to start. Importing :mod:`lepton_cdk.testing`
itself never imports pytest; only this module does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .aws_emulator import AwsEmulator
from .emulators import reset_moto, start_gcs_emulator, start_moto


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server on 127.0.0.1 (free port) for the session; yields its base URL."""
    with start_moto(log=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server.url


@pytest.fixture
def moto(moto_server: str) -> str:
    """The session's moto URL, emptied before the test (``/moto-api/reset``)."""
    reset_moto(moto_server)
    return moto_server


@pytest.fixture
def aws_emulator(moto: str) -> AwsEmulator:
    """Settings for a stack deployed to ``moto`` (provider, image, TLS policy), region ``us-east-1``."""
    return AwsEmulator(moto)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``gcp-storage-emulator`` on 127.0.0.1 (free port, in memory) for the session; yields its base URL."""
    with start_gcs_emulator(log=tmp_path_factory.mktemp("gcs") / "gcs.log") as server:
        yield server.url
