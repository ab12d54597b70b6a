"""Run Terraform on a synthesized stack from a test: init, validate, apply, re-plan for drift, destroy.

A deploy test of your own stack against moto reads::

    tf = Terraform(outdir / "stacks" / "models", env={**os.environ, **emulator.env()})
    tf("init", "-input=false")
    tf("apply", "-auto-approve", "-input=false")
    tf("plan", "-detailed-exitcode", "-input=false", "-out=replan.bin", ok_codes=(0, 2))
    assert planned_changes(tf, "replan.bin") == {}        # no drift
    tf("destroy", "-auto-approve", "-input=false")

A command that exits with a status outside ``ok_codes`` raises
:class:`TerraformError`, an ``AssertionError`` (a test failure under pytest
and unittest alike) whose message ends with Terraform's own output.
Standard library only; needs ``terraform`` on ``PATH``.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class TerraformError(AssertionError):
    """A ``terraform`` command exited with an unexpected status; the message ends with the tail of its output."""


def terraform_cli_config(mirror: str | Path) -> str:
    """A Terraform CLI configuration that installs providers only from the filesystem mirror ``mirror`` (offline)."""
    return (
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n    include = ["registry.terraform.io/*/*"]\n  }}\n'
        "}\n"
    )


@dataclass
class Terraform:
    """Runs ``terraform`` in one stack folder (``cdktf.out/stacks/<name>``) with a fixed environment.

    :param cwd: the stack folder.
    :param env: the complete environment for every command (add the
        emulator's dummy credentials with :meth:`~lepton_cdk.testing.AwsEmulator.env`).
    :param timings: seconds each command took, by its first argument (``apply``, ``plan`` ...), filled in as they run.
    """

    cwd: Path
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def __call__(self, *args: str, ok_codes: Sequence[int] = (0,), timeout_s: float = 600) -> subprocess.CompletedProcess:
        """Run ``terraform <args>`` and return the finished process; :class:`TerraformError` on a status not in ``ok_codes``."""
        started = time.monotonic()
        proc = subprocess.run(["terraform", *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
        self.timings[args[0]] = round(time.monotonic() - started, 1)
        if proc.returncode not in ok_codes:
            tail = (proc.stdout + proc.stderr)[-6000:]
            raise TerraformError(f"terraform {' '.join(args)} exited {proc.returncode} (expected {list(ok_codes)}):\n{tail}")
        return proc


def planned_changes(tf: Terraform, plan_file: str) -> dict[str, tuple]:
    """Every change in the saved plan ``plan_file``: ``{address: (actions, what changes)}``; ``{}`` means no drift.

    "What changes" is the replace paths of a replacement and the names of
    the changed attributes of an update, which is how a test names the drift
    an emulator is known to cause (and tolerates only that).
    """
    plan = json.loads(tf("show", "-json", plan_file).stdout)
    found = {}
    for c in plan.get("resource_changes", []):
        change = c["change"]
        actions = tuple(change["actions"])
        if actions in (("no-op",), ("read",)):
            continue
        if "delete" in actions:
            what = tuple(tuple(p) for p in change.get("replace_paths") or [])
        else:
            before: Mapping = change.get("before") or {}
            after: Mapping = change.get("after") or {}
            unknown: Mapping = change.get("after_unknown") or {}
            what = tuple(sorted(k for k in set(before) | set(after) if unknown.get(k) is True or before.get(k) != after.get(k)))
        found[c["address"]] = (actions, what)
    return found
