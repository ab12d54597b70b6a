"""The policy rules and the packs that group them. Standard library only.

Each rule is a small pure function in the cdk-nag shape: it gets one
resource's synthesized Terraform config (:class:`Resource`, references
already resolved to ``${type.name.attr}`` strings) and answers
:attr:`Compliance.COMPLIANT`, :attr:`Compliance.NON_COMPLIANT` (optionally
with a detail, as ``(NON_COMPLIANT, "ingress from 0.0.0.0/0")``) or
:attr:`Compliance.NOT_APPLICABLE`. A rule that needs another resource (the
S3 TLS rule looks for the bucket's policy) reads it through
``resource.stack``, a read-only view of the same synthesized stack.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lepton_cdk.contract.policy_report import FINDING_LEVELS


class Compliance(enum.Enum):
    """A rule's answer for one resource."""

    COMPLIANT = "compliant"
    NON_COMPLIANT = "non-compliant"
    NOT_APPLICABLE = "not-applicable"


COMPLIANT = Compliance.COMPLIANT
NON_COMPLIANT = Compliance.NON_COMPLIANT
NOT_APPLICABLE = Compliance.NOT_APPLICABLE

RuleResult = Compliance | tuple[Compliance, str]


class StackView:
    """The synthesized (resolved) Terraform JSON of one stack, for cross-resource lookups."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc

    def resources(self, rtype: str) -> dict[str, dict]:
        """Every resource of ``rtype`` by logical id."""
        return dict(self.doc.get("resource", {}).get(rtype, {}))

    def data(self, rtype: str) -> dict[str, dict]:
        """Every data source of ``rtype`` by logical id."""
        return dict(self.doc.get("data", {}).get(rtype, {}))


@dataclass(frozen=True)
class Resource:
    """One resource as synthesized: ``type``, logical ``name``, construct ``path`` and resolved ``config``."""

    type: str
    name: str
    path: str
    config: Mapping[str, Any]
    stack: StackView

    @property
    def address(self) -> str:
        """``type.name``, the Terraform address."""
        return f"{self.type}.{self.name}"

    def ref(self, attribute: str) -> str:
        """The reference string another resource uses for this one's ``attribute``."""
        return f"${{{self.type}.{self.name}.{attribute}}}"


@dataclass(frozen=True)
class Rule:
    """A policy rule: id (``LEP-S3-1``), name, explanation, fix, level and the check itself."""

    id: str
    name: str
    explanation: str
    fix: str
    level: str
    check: Callable[[Resource], RuleResult]

    def __post_init__(self) -> None:
        if self.level not in FINDING_LEVELS:
            raise ValueError(f"rule {self.id}: level {self.level!r} is not one of {', '.join(FINDING_LEVELS)}")

    def evaluate(self, resource: Resource) -> tuple[Compliance, str]:
        """The rule's answer and its detail ('' when the rule gave none)."""
        result = self.check(resource)
        if isinstance(result, tuple):
            return result[0], result[1]
        return result, ""


@dataclass(frozen=True)
class Pack:
    """A named set of rules applied together (cdk-nag's NagPack)."""

    name: str
    rules: tuple[Rule, ...]

    def rule(self, rule_id: str) -> Rule:
        """The rule with ``rule_id``; KeyError when this pack has none."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


# -- helpers ---------------------------------------------------------------------------------------------------

_DATA_REF = re.compile(r"^\$\{data\.aws_iam_policy_document\.([A-Za-z0-9_-]+)\.json\}$")
WORLD = ("0.0.0.0/0", "::/0")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _lifecycle(config: Mapping[str, Any]) -> Mapping[str, Any]:
    lc = config.get("lifecycle")
    return lc if isinstance(lc, Mapping) else {}


def policy_statements(policy: Any, stack: StackView) -> list[dict] | None:
    """An IAM policy's statements in the JSON policy shape (``Effect``, ``Action``, ``Condition``...).

    ``policy`` is a JSON string (references inside it stay strings) or a
    reference to a ``data.aws_iam_policy_document`` in the same stack, whose
    statements are translated. None when the policy cannot be read (built
    with a Terraform function at apply time).
    """
    if isinstance(policy, Mapping):
        doc: Any = policy
    elif isinstance(policy, str):
        match = _DATA_REF.match(policy.strip())
        if match:
            data = stack.data("aws_iam_policy_document").get(match.group(1))
            if data is None:
                return None
            return [_from_policy_document(s) for s in _as_list(data.get("statement"))]
        try:
            doc = json.loads(policy)
        except ValueError:
            return None
    else:
        return None
    if not isinstance(doc, Mapping):
        return None
    return [s for s in _as_list(doc.get("Statement")) if isinstance(s, Mapping)]


def _from_policy_document(statement: Mapping[str, Any]) -> dict:
    condition: dict[str, dict[str, list]] = {}
    for c in _as_list(statement.get("condition")):
        condition.setdefault(str(c.get("test", "")), {})[str(c.get("variable", ""))] = _as_list(c.get("values"))
    out: dict[str, Any] = {"Effect": statement.get("effect", "Allow"), "Condition": condition}
    if "actions" in statement:
        out["Action"] = _as_list(statement.get("actions"))
    if "not_actions" in statement:
        out["NotAction"] = _as_list(statement.get("not_actions"))
    return out


# -- rules -----------------------------------------------------------------------------------------------------


def _denies_insecure_transport(statement: Mapping[str, Any]) -> bool:
    if str(statement.get("Effect", "")).lower() != "deny":
        return False
    for test, variables in (statement.get("Condition") or {}).items():
        if str(test).lower() != "bool" or not isinstance(variables, Mapping):
            continue
        for variable, values in variables.items():
            if str(variable).lower() == "aws:securetransport" and any(str(v).lower() == "false" for v in _as_list(values)):
                return True
    return False


def s3_tls_only_policy(resource: Resource) -> RuleResult:
    """Every ``aws_s3_bucket`` has an ``aws_s3_bucket_policy`` denying requests with ``aws:SecureTransport=false``."""
    if resource.type != "aws_s3_bucket":
        return NOT_APPLICABLE
    names = {resource.ref("id"), resource.ref("bucket")}
    if isinstance(resource.config.get("bucket"), str):
        names.add(resource.config["bucket"])
    policies = [p for p in resource.stack.resources("aws_s3_bucket_policy").values() if p.get("bucket") in names]
    if not policies:
        return NON_COMPLIANT, "no aws_s3_bucket_policy on this bucket"
    for p in policies:
        if any(_denies_insecure_transport(s) for s in policy_statements(p.get("policy"), resource.stack) or []):
            return COMPLIANT
    return NON_COMPLIANT, "the bucket policy has no Deny on aws:SecureTransport=false"


def gcs_cmek(resource: Resource) -> RuleResult:
    """Every ``google_storage_bucket`` sets ``encryption.default_kms_key_name``."""
    if resource.type != "google_storage_bucket":
        return NOT_APPLICABLE
    blocks = _as_list(resource.config.get("encryption"))
    if any(isinstance(b, Mapping) and b.get("default_kms_key_name") for b in blocks):
        return COMPLIANT
    return NON_COMPLIANT, "no encryption.default_kms_key_name"


# Families with local NVMe instance storage: SageMaker refuses kms_key_arn for them (the volumes are
# hardware-encrypted), so the rule does not apply to an endpoint config that uses only these.
_NVME_FAMILIES = re.compile(r"^ml\.(c5d|c6gd|c6id|g4dn|g5|g6|g6e|gr6|inf2|m5d|m6gd|m6id|p3dn|p4d|p4de|p5|p5e|r5d|r6gd|r6id|trn1|trn1n)\.")


def sagemaker_kms(resource: Resource) -> RuleResult:
    """An ``aws_sagemaker_endpoint_configuration`` encrypts its ML storage volumes with ``kms_key_arn``."""
    if resource.type != "aws_sagemaker_endpoint_configuration":
        return NOT_APPLICABLE
    if resource.config.get("kms_key_arn"):
        return COMPLIANT
    variants = [v for v in _as_list(resource.config.get("production_variants")) if isinstance(v, Mapping)]
    if variants and all(v.get("serverless_config") or _NVME_FAMILIES.match(str(v.get("instance_type", ""))) for v in variants):
        return NOT_APPLICABLE  # serverless or instance-store only: SageMaker does not accept a key here
    return NON_COMPLIANT, "no kms_key_arn"


RETAINED_TYPES = ("aws_s3_bucket", "google_storage_bucket", "aws_kms_key", "google_kms_crypto_key")


def prevent_destroy(resource: Resource) -> RuleResult:
    """Data buckets and KMS keys carry ``lifecycle.prevent_destroy = true``."""
    if resource.type not in RETAINED_TYPES:
        return NOT_APPLICABLE
    if _lifecycle(resource.config).get("prevent_destroy") is True:
        return COMPLIANT
    return NON_COMPLIANT, "lifecycle.prevent_destroy is not true"


AWS_POLICY_TYPES = ("aws_iam_policy", "aws_iam_role_policy", "aws_iam_user_policy", "aws_iam_group_policy")


def _wildcard(action: Any) -> bool:
    text = str(action).strip()
    return text == "*" or (text.endswith(":*") and ":" not in text[:-2])


def _aws_policies(resource: Resource) -> Iterator[Any]:
    if resource.type in AWS_POLICY_TYPES:
        yield resource.config.get("policy")
    elif resource.type == "aws_iam_role":
        for inline in _as_list(resource.config.get("inline_policy")):
            if isinstance(inline, Mapping):
                yield inline.get("policy")


def no_wildcard_iam_actions(resource: Resource) -> RuleResult:
    """AWS IAM policies allow no ``"*"`` or ``"service:*"`` action (and no ``NotAction`` allow)."""
    if resource.type not in AWS_POLICY_TYPES + ("aws_iam_role",):
        return NOT_APPLICABLE
    read_any = False
    for policy in _aws_policies(resource):
        statements = policy_statements(policy, resource.stack)
        if statements is None:
            continue
        read_any = True
        for s in statements:
            if str(s.get("Effect", "Allow")).lower() != "allow":
                continue
            if "NotAction" in s:
                return NON_COMPLIANT, "an Allow statement uses NotAction"
            bad = sorted({str(a) for a in _as_list(s.get("Action")) if _wildcard(a)})
            if bad:
                return NON_COMPLIANT, f"allows {', '.join(repr(a) for a in bad)}"
    return COMPLIANT if read_any else NOT_APPLICABLE


GCP_IAM_TYPES = tuple(f"google_{scope}_iam_{kind}" for scope in ("project", "folder", "organization") for kind in ("member", "binding", "policy"))
BASIC_ROLES = ("roles/owner", "roles/editor")


def no_basic_gcp_roles(resource: Resource) -> RuleResult:
    """Project/folder/organization IAM grants no basic role (``roles/owner``, ``roles/editor``)."""
    if resource.type not in GCP_IAM_TYPES:
        return NOT_APPLICABLE
    roles: list[Any] = []
    if resource.type.endswith("_policy"):
        try:
            policy = json.loads(str(resource.config.get("policy_data", "")))
        except ValueError:
            return NOT_APPLICABLE
        roles = [b.get("role") for b in _as_list(policy.get("bindings") if isinstance(policy, Mapping) else None) if isinstance(b, Mapping)]
    else:
        roles = [resource.config.get("role")]
    bad = sorted({str(r) for r in roles if r in BASIC_ROLES})
    if bad:
        return NON_COMPLIANT, f"grants {', '.join(bad)}"
    return COMPLIANT


def _world(cidrs: Iterable[Any]) -> list[str]:
    return sorted({str(c) for c in cidrs if str(c).strip() in WORLD})


def no_world_open_ingress(resource: Resource) -> RuleResult:
    """No security group, ingress rule or firewall admits traffic from 0.0.0.0/0 or ::/0."""
    c = resource.config
    if resource.type == "aws_security_group":
        rules = [r for r in _as_list(c.get("ingress")) if isinstance(r, Mapping)]
        world = _world(x for r in rules for x in _as_list(r.get("cidr_blocks")) + _as_list(r.get("ipv6_cidr_blocks")))
    elif resource.type == "aws_security_group_rule":
        if c.get("type") != "ingress":
            return NOT_APPLICABLE
        world = _world(_as_list(c.get("cidr_blocks")) + _as_list(c.get("ipv6_cidr_blocks")))
    elif resource.type == "aws_vpc_security_group_ingress_rule":
        world = _world([c.get("cidr_ipv4"), c.get("cidr_ipv6")])
    elif resource.type == "google_compute_firewall":
        if str(c.get("direction", "INGRESS")).upper() != "INGRESS" or not _as_list(c.get("allow")):
            return NOT_APPLICABLE
        ranges = _as_list(c.get("source_ranges"))
        if not ranges and not c.get("source_tags") and not c.get("source_service_accounts"):
            return NON_COMPLIANT, "no source_ranges, tags or service accounts: GCP admits 0.0.0.0/0"
        world = _world(ranges)
    else:
        return NOT_APPLICABLE
    if world:
        return NON_COMPLIANT, f"ingress from {' and '.join(world)}"
    return COMPLIANT


S3_TLS = Rule(
    "LEP-S3-1", "S3 TLS-only bucket policy",
    "Every S3 bucket has a bucket policy that denies requests not made over TLS (aws:SecureTransport=false); "
    "checkov does not check this.",
    "give the bucket an aws_s3_bucket_policy with a Deny on aws:SecureTransport=false (ModelBucket does by default: enforce_tls=True)",
    "error", s3_tls_only_policy)
GCS_CMEK = Rule(
    "LEP-GCS-1", "GCS customer-managed encryption key",
    "Every Cloud Storage bucket encrypts with a customer-managed Cloud KMS key (encryption.default_kms_key_name); "
    "checkov does not check this.",
    "set encryption.default_kms_key_name to a Cloud KMS key the storage agent may use (ModelBucket does by default)",
    "error", gcs_cmek)
SAGEMAKER_KMS = Rule(
    "LEP-SM-1", "SageMaker endpoint volume encryption",
    "A SageMaker endpoint configuration encrypts its ML storage volumes with a KMS key (kms_key_arn). Not applicable "
    "when every variant is serverless or on an instance type with local NVMe storage, where SageMaker refuses a key.",
    "set kms_key_arn on the aws_sagemaker_endpoint_configuration",
    "error", sagemaker_kms)
RETAIN = Rule(
    "LEP-RETAIN-1", "Data buckets and keys are retained",
    "Buckets and KMS keys carry lifecycle.prevent_destroy, so no plan can delete the data or the key that decrypts it.",
    "set lifecycle prevent_destroy=true (ModelBucket: retain_on_destroy=True), or suppress with a reason for a dev/test stack",
    "error", prevent_destroy)
IAM_WILDCARD = Rule(
    "LEP-IAM-1", "No wildcard IAM actions",
    "AWS IAM policies (aws_iam_policy, aws_iam_*_policy, aws_iam_role.inline_policy) allow no '*' or 'service:*' "
    "action and no NotAction.",
    "list the actions the principal needs (e.g. s3:GetObject), or use the constructs' grant_* methods",
    "error", no_wildcard_iam_actions)
GCP_BASIC_ROLES = Rule(
    "LEP-IAM-2", "No basic GCP roles",
    "Project, folder and organization IAM grants no basic role (roles/owner, roles/editor).",
    "grant a predefined or custom role scoped to the need (e.g. roles/storage.objectViewer on the bucket)",
    "error", no_basic_gcp_roles)
NO_WORLD_INGRESS = Rule(
    "LEP-NET-1", "No world-open ingress",
    "No aws_security_group, aws_security_group_rule, aws_vpc_security_group_ingress_rule or google_compute_firewall "
    "admits ingress from 0.0.0.0/0 or ::/0.",
    "allow only known CIDR ranges, a load balancer's security group or network tags",
    "error", no_world_open_ingress)

LEPTON_CORE = Pack("LeptonCore", (S3_TLS, GCS_CMEK, SAGEMAKER_KMS, RETAIN, IAM_WILDCARD, GCP_BASIC_ROLES, NO_WORLD_INGRESS))
"""The default pack, for both clouds."""

RULES: dict[str, Rule] = {r.id: r for r in LEPTON_CORE.rules}
"""Every rule lepton-cdk ships, by id."""
