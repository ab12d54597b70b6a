"""checkov over synthesized stacks, compared with a reviewed baseline of accepted findings.

A baseline is a YAML file listing the checkov findings a reviewer accepted,
each with the reason it is accepted::

    version: 1
    accepted:
      - check: CKV_AWS_144                 # checkov check id
        resource: aws_s3_bucket.*          # fnmatch pattern on the Terraform address (type.logical_id)
        stacks: [lepton-aws]               # optional: fnmatch patterns on stack names; default every stack
        reason: >-                         # required, at least 20 characters: why the risk is accepted
          Cross-region replication doubles storage ...

:func:`check_stacks` runs checkov once over every ``cdk.tf.json`` under one
or more ``cdktf.out`` folders (offline: ``--skip-download``) and returns
the failures no entry accepts (``unexpected``) and the entries that matched
nothing (``stale``: the finding was fixed, so the entry must go). Both empty
means the stacks pass. Standard library only, plus PyYAML to read the file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import PolicyError

MIN_BASELINE_REASON_CHARS = 20
_ENTRY_KEYS = {"check", "resource", "stacks", "reason"}


class BaselineError(PolicyError):
    """The baseline file is missing, malformed, or has an entry without a real reason."""


class CheckovError(PolicyError):
    """checkov is not installed, or did not produce a report."""


@dataclass(frozen=True)
class BaselineEntry:
    """One accepted finding pattern and why it is accepted."""

    check: str
    resource: str
    reason: str
    stacks: tuple[str, ...] = ("*",)

    def accepts(self, failure: CheckovFailure) -> bool:
        """True when ``failure`` is this check on a matching resource in a matching stack."""
        return (failure.check_id == self.check and fnmatch.fnmatchcase(failure.resource, self.resource)
                and any(fnmatch.fnmatchcase(failure.stack, s) for s in self.stacks))

    def __str__(self) -> str:
        return f"{self.check} on {self.resource} in {', '.join(self.stacks)}"


@dataclass(frozen=True)
class CheckovFailure:
    """One failed checkov check on one resource of one stack."""

    stack: str
    check_id: str
    check_name: str
    resource: str  # Terraform address, type.logical_id

    def __str__(self) -> str:
        return f"{self.stack}: {self.check_id} {self.resource} ({self.check_name})"


@dataclass(frozen=True)
class BaselineResult:
    """What :func:`check_stacks` found."""

    stacks: tuple[str, ...]
    passed: int
    failures: tuple[CheckovFailure, ...]
    unexpected: tuple[CheckovFailure, ...]
    stale: tuple[BaselineEntry, ...]
    accepted: dict[str, list[CheckovFailure]] = field(default_factory=dict)  # str(entry) -> failures it accepted
    checkov_version: str = ""

    @property
    def ok(self) -> bool:
        """No failure outside the baseline and no stale entry."""
        return not self.unexpected and not self.stale

    def summary(self) -> str:
        """One paragraph for a test failure or a PR comment."""
        lines = [f"checkov {self.checkov_version} on {len(self.stacks)} stack(s) ({', '.join(self.stacks)}): {self.passed} passed, "
                 f"{len(self.failures)} failed, {len(self.failures) - len(self.unexpected)} accepted by the baseline"]
        lines += [f"  not in the baseline: {f}" for f in self.unexpected]
        lines += [f"  stale baseline entry (matched nothing; remove it): {e}" for e in self.stale]
        return "\n".join(lines)


def load_baseline(path: str | Path) -> list[BaselineEntry]:
    """Read and check a baseline file; raises :class:`BaselineError` naming the bad entry and the fix."""
    import yaml  # only this function needs it

    from lepton_cdk.contract.errors import ContractError
    from lepton_cdk.contract.files import read_file_bytes
    from lepton_cdk.yaml_documents import load_yaml

    path = Path(path)
    fix = "pass the path of the reviewed baseline file"
    try:
        data = read_file_bytes(path, what="checkov baseline", fix=fix,
                               missing=f"cannot read checkov baseline {path}: it does not exist; {fix}")
        doc = load_yaml(data.decode("utf-8"), f"checkov baseline {path}", error=BaselineError)
    except ContractError as exc:
        raise BaselineError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise BaselineError(f"checkov baseline {path} is not UTF-8 text (byte {exc.start}); {fix}") from None
    except yaml.YAMLError as exc:
        raise BaselineError(f"checkov baseline {path} is not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("accepted", []), list):
        raise BaselineError(f"checkov baseline {path} must be a mapping with version: 1 and an 'accepted' list")
    entries = []
    for i, item in enumerate(doc.get("accepted") or []):
        where = f"checkov baseline {path}, entry {i + 1}"
        if not isinstance(item, dict):
            raise BaselineError(f"{where} is not a mapping; give it check, resource and reason")
        unknown = sorted(set(item) - _ENTRY_KEYS)
        if unknown:
            raise BaselineError(f"{where} has unknown key(s) {', '.join(unknown)}; use only {', '.join(sorted(_ENTRY_KEYS))}")
        check, resource, reason = item.get("check"), item.get("resource"), item.get("reason")
        if not isinstance(check, str) or not check.startswith("CKV"):
            raise BaselineError(f"{where}: check={check!r} is not a checkov check id such as CKV_AWS_144")
        if not isinstance(resource, str) or not resource:
            raise BaselineError(f"{where} ({check}): resource={resource!r} must be a pattern such as aws_s3_bucket.*")
        text = " ".join(reason.split()) if isinstance(reason, str) else ""
        if len(text) < MIN_BASELINE_REASON_CHARS:
            raise BaselineError(f"{where} ({check}): every accepted finding needs a reason of at least {MIN_BASELINE_REASON_CHARS} "
                                f"characters saying why the risk is accepted, got {reason!r}")
        stacks = item.get("stacks", ["*"])
        if isinstance(stacks, str) or not isinstance(stacks, list) or not all(isinstance(s, str) and s for s in stacks):
            raise BaselineError(f"{where} ({check}): stacks={stacks!r} must be a list of stack name patterns")
        entries.append(BaselineEntry(check, resource, text, tuple(stacks)))
    return entries


def checkov_executable() -> str | None:
    """The ``checkov`` on PATH or beside this Python (a virtual environment's bin/); None when absent."""
    beside = Path(sys.executable).parent / "checkov"
    return shutil.which("checkov") or (str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None)


def stack_files(cdktf_outs: Iterable[str | Path]) -> list[Path]:
    """Every ``stacks/<name>/cdk.tf.json`` under the given ``cdktf.out`` folders, sorted by path."""
    files = sorted(p for out in cdktf_outs for p in Path(out).glob("stacks/*/cdk.tf.json"))
    return files


def _address(resource: str, doc: dict[str, Any]) -> str:
    # checkov names some resources of the terraform_json framework "resource.<logical id>"; find their type.
    if not resource.startswith("resource."):
        return resource
    name = resource.removeprefix("resource.")
    types = [t for t, items in doc.get("resource", {}).items() if name in items]
    return f"{types[0]}.{name}" if len(types) == 1 else resource


def run_checkov(files: Sequence[Path], executable: str) -> tuple[list[CheckovFailure], int, str]:
    """Run checkov once over ``files``; returns (failures, passed count, checkov version)."""
    cmd = [executable, "--framework", "terraform_json", "-o", "json", "--quiet", "--skip-download"]
    for f in files:
        cmd += ["-f", str(f)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CheckovError(f"checkov could not run: {exc}") from None
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CheckovError(f"checkov exited {proc.returncode} without a JSON report ({tail[0][:300]})") from None
    stacks = {str(f.resolve()): (f.parent.name, json.loads(f.read_text(encoding="utf-8"))) for f in files}
    by_name: dict[str, list[str]] = {}
    for key, (name, _doc) in stacks.items():
        by_name.setdefault(name, []).append(key)
    failures: list[CheckovFailure] = []
    passed = 0
    version = ""
    for report in doc if isinstance(doc, list) else [doc]:
        summary = report.get("summary", {})
        passed += int(summary.get("passed", 0))
        version = summary.get("checkov_version", version)
        for c in report.get("results", {}).get("failed_checks", []):
            path = Path(str(c.get("file_abs_path") or c.get("file_path") or ""))
            key = str(path.resolve()) if path.is_absolute() else None
            if key not in stacks:  # checkov reports paths relative to the scan root: match on the stack folder name
                candidates = by_name.get(path.parent.name, [])
                key = candidates[0] if len(candidates) == 1 else None
            if key is None:
                raise CheckovError(f"checkov reported a finding in {path}, which is none of the scanned stacks")
            name, stack_doc = stacks[key]
            failures.append(CheckovFailure(name, str(c["check_id"]), str(c.get("check_name", "")), _address(str(c["resource"]), stack_doc)))
    return sorted(set(failures), key=lambda f: (f.stack, f.check_id, f.resource)), passed, version


def compare(failures: Sequence[CheckovFailure], baseline: Sequence[BaselineEntry], *, stacks: Sequence[str] = (),
            passed: int = 0, version: str = "") -> BaselineResult:
    """Split ``failures`` into accepted and unexpected, and find the baseline entries nothing matched."""
    accepted: dict[str, list[CheckovFailure]] = {str(e): [] for e in baseline}
    unexpected = []
    for f in failures:
        matching = [e for e in baseline if e.accepts(f)]
        if not matching:
            unexpected.append(f)
        for e in matching:
            accepted[str(e)].append(f)
    stale = tuple(e for e in baseline if not accepted[str(e)])
    return BaselineResult(tuple(stacks), passed, tuple(failures), tuple(unexpected), stale, accepted, version)


def check_stacks(cdktf_outs: str | Path | Iterable[str | Path], baseline: str | Path | Sequence[BaselineEntry],
                 *, executable: str | None = None) -> BaselineResult:
    """Scan every stack under ``cdktf_outs`` with checkov and compare with ``baseline`` (a path or loaded entries).

    Raises :class:`CheckovError` when checkov is missing or fails to
    report, :class:`BaselineError` for a bad baseline file.
    """
    outs = [cdktf_outs] if isinstance(cdktf_outs, str | Path) else list(cdktf_outs)
    entries = load_baseline(baseline) if isinstance(baseline, str | Path) else list(baseline)
    files = stack_files(outs)
    if not files:
        raise CheckovError(f"no stacks/*/cdk.tf.json under {', '.join(map(str, outs))}; run `cdktf synth` first")
    names = [f.parent.name for f in files]
    if len(set(names)) != len(names):
        raise CheckovError(f"stack names repeat across the cdktf.out folders ({', '.join(sorted(names))}); baseline entries match by name")
    exe = executable or checkov_executable()
    if exe is None:
        raise CheckovError("checkov is not installed (pip install checkov); it is needed to compare the stacks with the baseline")
    failures, passed, version = run_checkov(files, exe)
    return compare(failures, entries, stacks=names, passed=passed, version=version)
