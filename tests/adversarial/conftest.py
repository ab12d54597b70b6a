"""Hostile inputs, as an outsider would try them: every case asserts the exit status, the one-line message,
that nothing outside the working folder changed and that published results are byte-identical afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hostile import Guard


@pytest.fixture
def guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Guard]:
    """A working folder (cwd, HOME, XDG_STATE_HOME) with sentinels outside it, checked at teardown."""
    work = tmp_path / "work"
    work.mkdir()
    g = Guard(base=tmp_path, work=work)
    g.arm()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work))
    monkeypatch.setenv("XDG_STATE_HOME", str(work / ".state"))
    monkeypatch.delenv("LEPTON_PIPELINE_CONFIG", raising=False)
    yield g
    g.assert_outside_unchanged()
    g.assert_published_unchanged()
    os.chdir(tmp_path)
