"""IAM roles whose inline policy grows with every ``grant_*`` call.

Default settings:
- The role trusts one AWS service (``ec2.amazonaws.com`` for nodes) and
  nothing else.
- No managed policies are attached; every permission comes from a grant, so
  the role's policy lists exactly what the constructs using it asked for.
- The inline policy (child ``"Policy"``) is created on the first grant; a role
  nobody granted anything has no policy at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lepton_cdk.core.framework import Construct, aws
from lepton_cdk.core.interfaces import IAwsPrincipal, IGrantable, grant_principal_of


@dataclass(frozen=True)
class PolicyStatement:
    """One IAM policy statement. Resource strings may hold cdktf tokens (ARNs)."""

    actions: Sequence[str]
    resources: Sequence[str]
    effect: str = "Allow"
    sid: str = ""
    conditions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The statement as IAM JSON."""
        doc: dict[str, Any] = {}
        if self.sid:
            doc["Sid"] = self.sid
        doc["Effect"] = self.effect
        doc["Action"] = list(self.actions) if len(self.actions) != 1 else self.actions[0]
        doc["Resource"] = list(self.resources) if len(self.resources) != 1 else self.resources[0]
        if self.conditions:
            doc["Condition"] = {op: dict(kv) for op, kv in self.conditions.items()}
        return doc


def policy_document(statements: Sequence[PolicyStatement]) -> str:
    """A policy document as a JSON string (tokens inside resolve at synth)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [s.to_json() for s in statements]}, separators=(",", ":"))


def iam_principal(method: str, grantee: IGrantable) -> IAwsPrincipal:
    """``grantee``'s IAM ``grant_principal``; ``TypeError`` naming ``method`` when it has none (e.g. a GCP service account)."""
    return grant_principal_of(method, grantee, IAwsPrincipal, "an IAM grant_principal (a GpuNodeGroup or ServiceRole of lepton_cdk.aws)")


class ServiceRole(Construct):
    """An IAM role assumed by one AWS service, granted permissions statement by statement.

    It is its own ``grant_principal``: pass it (or the construct that owns
    it) to ``bucket.grant_read(...)``.
    """

    def __init__(self, scope: Construct, id: str, *, service: str, description: str = "") -> None:
        """Create the role.

        :param service: the service principal allowed to assume the role, e.g. ``"ec2.amazonaws.com"``.
        :param description: shown in the IAM console. Default: none.
        """
        super().__init__(scope, id)
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
        self.resource = aws.iam_role.IamRole(
            self, "Resource",
            name_prefix="lepton-",
            description=description or None,
            assume_role_policy=json.dumps(trust, separators=(",", ":")),
            force_detach_policies=True,
        )
        self._statements: list[PolicyStatement] = []
        self._policy: Any = None

    @property
    def grant_principal(self) -> ServiceRole:
        """The role itself."""
        return self

    @property
    def role_name(self) -> str:
        """The role's name (a token: Terraform chooses it from the ``lepton-`` prefix)."""
        return self.resource.name

    @property
    def role_arn(self) -> str:
        """The role's ARN."""
        return self.resource.arn

    @property
    def statements(self) -> tuple[PolicyStatement, ...]:
        """Every statement granted so far."""
        return tuple(self._statements)

    @property
    def policy(self) -> Any:
        """The inline policy (child ``"Policy"``) holding every grant, for ``depends_on``; it exists once something was granted."""
        if self._policy is None:
            raise ValueError(f"{self.node.path} has no inline policy yet: grant it something first")
        return self._policy

    def add_to_principal_policy(self, statement: PolicyStatement) -> None:
        """Add ``statement`` to the role's inline policy (child ``"Policy"``)."""
        self._statements.append(statement)
        document = policy_document(self._statements)
        if self._policy is None:
            self._policy = aws.iam_role_policy.IamRolePolicy(
                self, "Policy", name="lepton-grants", role=self.resource.id, policy=document,
            )
        else:
            self._policy.policy = document
