"""A dedicated service account that is its own grant principal.

Default settings:
- No project-level roles at all; every permission is a resource-level grant
  (``bucket.grant_read(...)``) made by the constructs that use the account.
"""

from __future__ import annotations

import re

from lepton_cdk.core.framework import Construct, google
from lepton_cdk.core.interfaces import IGcpPrincipal, IGrantable, grant_principal_of
from lepton_cdk.core.validation import PropChecks

from .naming import stable_suffix

_ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


def member_principal(method: str, grantee: IGrantable) -> IGcpPrincipal:
    """``grantee``'s service account ``grant_principal``; ``TypeError`` naming ``method`` when it has none (e.g. an IAM role)."""
    return grant_principal_of(method, grantee, IGcpPrincipal,
                              "a service account grant_principal (a GpuNodeGroup or ServiceAccount of lepton_cdk.gcp)")


class ServiceAccount(Construct):
    """A GCP service account (child ``"Resource"``) for one workload."""

    def __init__(self, scope: Construct, id: str, *, account_id: str | None = None, display_name: str = "") -> None:
        """Create the account.

        :param account_id: the part before ``@``, 6-30 characters. Default:
            ``lepton-<8 hex>`` derived from the construct path.
        :param display_name: shown in the console. Default: the construct path.
        """
        super().__init__(scope, id)
        account_id = account_id or f"lepton-{stable_suffix(self)}"
        checks = PropChecks(self.node.path)
        if checks.known(account_id):
            checks.require(bool(_ACCOUNT_ID.match(account_id)),
                           f"account_id={account_id!r} is not a valid service account id; use 6-30 lowercase letters, digits or '-', starting with a letter")
        checks.raise_if_any()
        self.resource = google.service_account.ServiceAccount(
            self, "Resource", account_id=account_id, display_name=display_name or f"lepton-cdk {self.node.path}"[:100],
        )

    @property
    def grant_principal(self) -> ServiceAccount:
        """The account itself."""
        return self

    @property
    def email(self) -> str:
        """The account's e-mail address."""
        return self.resource.email

    @property
    def member(self) -> str:
        """``serviceAccount:<email>``, the form IAM bindings take."""
        return self.resource.member
