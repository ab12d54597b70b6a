"""Errors raised while reviewing synthesized stacks. Each message is one line
naming the problem and the fix, so the CLI prints it as it is."""

from lepton_cdk.contract import ContractError


class ReviewError(ContractError):
    """A cdktf.out folder, policy report or review input is missing or malformed."""


class CatalogError(ReviewError):
    """A price catalog file or one of its rows is malformed."""
