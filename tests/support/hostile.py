"""A harness for hostile-input tests: run ``lepton`` in-process, check its one-line error, and prove nothing
outside the working folder changed and published results stayed byte-identical.

Every adversarial test gets a :class:`Guard` (the ``guard`` fixture in ``tests/adversarial/conftest.py``):
``guard.work`` is the working folder (also the current directory, ``HOME`` and ``XDG_STATE_HOME``), and
everything else under the test's temporary folder is "outside": a few sentinel files live there, and the
fixture asserts at teardown that none of it changed. ``guard.publish(path)`` records files a test
published before the hostile step; ``guard.assert_published_unchanged()`` (also run at teardown)
checks them byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path


def snapshot(root: Path, *, skip: Path | None = None) -> dict[str, str]:
    """Every entry under ``root`` (not following symlinks) as ``{relative path: kind and content hash}``."""
    out: dict[str, str] = {}
    if not root.exists() and not root.is_symlink():
        return out
    if root.is_file() or root.is_symlink():
        return {".": _describe(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames[:] = []
            continue
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = here / name
            if skip is not None and path == skip:
                continue
            out[path.relative_to(root).as_posix()] = _describe(path)
    return out


def _describe(path: Path) -> str:
    if path.is_symlink():
        return f"link:{os.readlink(path)}"
    if path.is_dir():
        return "dir"
    if path.is_file():
        try:
            return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
        except PermissionError:
            return f"file(unreadable):{path.stat().st_size}"
    return "special"


@dataclass
class Outcome:
    """What one ``lepton`` invocation did."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def error_line(self) -> str:
        """The single ``error: ...`` line; fails the test when there is none, several, or a traceback."""
        assert "Traceback" not in self.stderr, f"lepton {' '.join(self.args)} printed a traceback:\n{self.stderr}"
        errors = [ln for ln in self.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, f"lepton {' '.join(self.args)}: want one error line, got:\n{self.stderr}"
        line = errors[0]
        assert "unexpected" not in line, f"an unexpected exception reached the user: {line}"
        return line


def run_lepton(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> Outcome:
    """``lepton ARGS`` in this process (the console script's ``main``), with plain CI-style output."""
    from lepton_cdk.cli import root as cli

    saved = {k: os.environ.get(k) for k in {"CI", *(env or {})}}
    os.environ["CI"] = "true"
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    old_stdin = os.sys.stdin
    try:
        os.sys.stdin = io.StringIO(stdin)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
    finally:
        os.sys.stdin = old_stdin
        cli._state["debug"] = False
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Outcome(tuple(args), code, out.getvalue(), err.getvalue())


def usage_error_line(outcome: Outcome) -> str:
    """The message of a usage error (click prints a box or ``Error: ...``); exit status 2."""
    assert outcome.code == 2, outcome
    text = " ".join(outcome.stderr.split())
    assert "Traceback" not in outcome.stderr
    return text


@dataclass
class Guard:
    """The working folder of one hostile test and the proof that nothing else changed."""

    base: Path  # the test's temporary folder: everything but ``work`` is outside
    work: Path
    _outside: dict[str, str] = field(default_factory=dict)
    _published: dict[Path, dict[str, str]] = field(default_factory=dict)

    def arm(self) -> None:
        """Lay out sentinels outside the working folder and remember everything there."""
        sentinel = self.base / "outside"
        sentinel.mkdir(exist_ok=True)
        (sentinel / "victim.txt").write_text("must survive\n")
        (sentinel / "notes.lepton-tmp-mine").write_text("a user's file with a temporary-looking name\n")
        (self.base / "victim.txt").write_text("must survive too\n")
        self._outside = snapshot(self.base, skip=self.work)

    def publish(self, *paths: Path) -> None:
        """Record results published before the hostile step; they must come out byte-identical."""
        for path in paths:
            self._published[path] = snapshot(path)

    def assert_outside_unchanged(self) -> None:
        """Nothing outside the working folder was created, changed or removed."""
        now = snapshot(self.base, skip=self.work)
        changed = sorted(k for k in set(now) | set(self._outside) if now.get(k) != self._outside.get(k))
        assert not changed, f"changed outside the working folder: {changed}"

    def assert_published_unchanged(self) -> None:
        """Every published result is byte-identical to when it was recorded."""
        for path, before in self._published.items():
            now = snapshot(path)
            changed = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
            assert not changed, f"published results under {path} changed: {changed}"
