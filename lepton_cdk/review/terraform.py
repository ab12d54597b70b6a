"""``lepton review --plan-from-state``: run ``terraform plan`` for a synthesized stack against its state.

Runs only where a plan can be made: ``terraform`` on PATH (or
``$LEPTON_TERRAFORM``), and for the stack's cloud either an emulator the
provider block points at (its ``endpoints``) that answers, or credentials
(environment, profile files, the provider block). With a local backend, the
state file must exist: with none there is nothing deployed, and a plan would
only list what the static diff lists. When a plan cannot be made, the attempt
says why in one line and the review falls back to the static diff, saying so.

The plan file goes to a temporary folder, never into ``cdktf.out``;
``terraform init`` writes its ``.terraform`` folder into the stack folder, as
``cdktf diff`` does. The plan is read-only: ``-lock=false`` (it writes no
state) and ``-input=false``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .plan import TerraformPlan, parse_plan
from .resources import PROVIDER_CLOUDS, StackDocument

DEFAULT_TIMEOUT_S = 900
_PREVENT_DESTROY = re.compile(r"Resource (\S+) has lifecycle\.prevent_destroy set")


@dataclass(frozen=True)
class PlanAttempt:
    """The outcome for one stack: a plan, or the reason there is none (and what Terraform refused to destroy)."""

    stack: str
    plan: TerraformPlan | None = None
    reason: str = ""
    refused: tuple[str, ...] = ()  # addresses Terraform would not destroy (lifecycle.prevent_destroy)
    plan_json: str = ""  # `terraform show -json` of the plan, as Terraform wrote it


def terraform_executable() -> str | None:
    """``$LEPTON_TERRAFORM`` or ``terraform`` on PATH; None when neither is there."""
    configured = os.environ.get("LEPTON_TERRAFORM")
    if configured:
        return configured if Path(configured).is_file() and os.access(configured, os.X_OK) else None
    return shutil.which("terraform")


def _emulators(stack: StackDocument) -> list[str]:
    """The distinct endpoint URLs the stack's provider blocks point at."""
    urls = set()
    for block, configs in stack.doc.get("provider", {}).items():
        if block not in PROVIDER_CLOUDS:
            continue
        for config in configs or []:
            for endpoints in config.get("endpoints") or []:
                urls.update(v for v in (endpoints or {}).values() if isinstance(v, str) and v.startswith(("http://", "https://")))
            urls.update(v for k, v in config.items() if k.endswith("_custom_endpoint") and isinstance(v, str))
    return sorted(urls)


def _answers(url: str, timeout_s: float = 2.0) -> bool:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _aws_credentials(stack: StackDocument) -> bool:
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE") or env.get("AWS_WEB_IDENTITY_TOKEN_FILE") \
            or env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return True
    for config in stack.doc.get("provider", {}).get("aws", []) or []:
        if any(config.get(k) for k in ("access_key", "profile", "shared_credentials_files", "assume_role_with_web_identity")):
            return True
    files = [env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials", env.get("AWS_CONFIG_FILE") or "~/.aws/config"]
    for name in files:
        path = Path(name).expanduser()
        try:
            text = path.read_text(errors="replace") if path.is_file() else ""
        except OSError:
            continue
        if any(key in text for key in ("aws_access_key_id", "credential_process", "role_arn", "sso_session", "sso_start_url")):
            return True
    return False


def _gcp_credentials(stack: StackDocument) -> bool:
    env = os.environ
    if any(env.get(k) for k in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CREDENTIALS", "GOOGLE_OAUTH_ACCESS_TOKEN",
                                "CLOUDSDK_AUTH_ACCESS_TOKEN")):
        return True
    for block in ("google", "google-beta"):
        for config in stack.doc.get("provider", {}).get(block, []) or []:
            if config.get("credentials") or config.get("access_token"):
                return True
    adc = Path(env.get("CLOUDSDK_CONFIG") or "~/.config/gcloud").expanduser() / "application_default_credentials.json"
    return adc.is_file()


def why_no_plan(stack: StackDocument) -> str:
    """Why ``terraform plan`` cannot run for ``stack`` here; empty when it can."""
    if terraform_executable() is None:
        return "terraform is not on PATH (install Terraform >= 1.5 or set LEPTON_TERRAFORM)"
    emulators = _emulators(stack)
    if emulators:
        down = [u for u in emulators if not _answers(u)]
        if down:
            return f"the emulator the provider points at ({down[0]}) does not answer; start it, or synthesize for the real cloud"
    elif stack.cloud == "aws" and not _aws_credentials(stack):
        return ("no AWS credentials found (AWS_ACCESS_KEY_ID, AWS_PROFILE, a web identity token, ~/.aws/credentials) and the "
                "provider names no emulator endpoint")
    elif stack.cloud == "gcp" and not _gcp_credentials(stack):
        return ("no Google Cloud credentials found (GOOGLE_APPLICATION_CREDENTIALS, GOOGLE_CREDENTIALS, gcloud application-default "
                "login) and the provider names no emulator endpoint")
    elif stack.cloud is None:
        return "the stack has no AWS or Google provider block"
    backend = (stack.doc.get("terraform") or {}).get("backend") or {}
    local = backend.get("local") if isinstance(backend, dict) else None
    if isinstance(local, dict) or not backend:
        path = Path((local or {}).get("path") or "terraform.tfstate")
        path = path if path.is_absolute() else stack.folder / path
        if not path.is_file():
            return (f"no state at {path} (local backend): nothing is deployed from this stack here, so a plan would only add "
                    "what the static diff lists")
    return ""


def _first_error(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().strip("│").strip()
        if line.startswith("Error:"):
            return line
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def plan_from_state(stack: StackDocument, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> PlanAttempt:
    """``terraform init`` + ``plan`` + ``show -json`` in the stack's folder; see the module docstring."""
    reason = why_no_plan(stack)
    if reason:
        return PlanAttempt(stack.name, reason=reason)
    terraform = terraform_executable() or "terraform"
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([terraform, *args], cwd=stack.folder, env=env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)

    with tempfile.TemporaryDirectory(prefix="lepton-plan-") as tmp:
        plan_file = str(Path(tmp) / "plan.bin")
        try:
            init = run("init", "-input=false", "-no-color")
            if init.returncode != 0:
                return PlanAttempt(stack.name, reason=f"terraform init failed: {_first_error(init.stdout + init.stderr)}")
            planned = run("plan", "-input=false", "-no-color", "-lock=false", f"-out={plan_file}")
            if planned.returncode != 0:
                output = planned.stdout + planned.stderr
                refused = tuple(dict.fromkeys(_PREVENT_DESTROY.findall(output)))
                if refused:
                    return PlanAttempt(stack.name, reason=f"terraform plan refused: {len(refused)} resource(s) with "
                                       "lifecycle.prevent_destroy would be destroyed", refused=refused)
                return PlanAttempt(stack.name, reason=f"terraform plan failed: {_first_error(output)}")
            shown = run("show", "-json", "-no-color", plan_file)
        except subprocess.TimeoutExpired:
            return PlanAttempt(stack.name, reason=f"terraform did not finish within {timeout_s:.0f} s")
        except OSError as exc:
            return PlanAttempt(stack.name, reason=f"terraform could not run: {exc.strerror or exc}")
    if shown.returncode != 0:
        return PlanAttempt(stack.name, reason=f"terraform show failed: {_first_error(shown.stdout + shown.stderr)}")
    try:
        doc = json.loads(shown.stdout)
    except json.JSONDecodeError as exc:
        return PlanAttempt(stack.name, reason=f"terraform show -json wrote no JSON ({exc.msg})")
    return PlanAttempt(stack.name, plan=parse_plan(doc, f"terraform plan of {stack.name}"), plan_json=shown.stdout)
