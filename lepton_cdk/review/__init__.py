"""Pull-request review of synthesized stacks: what they create (no cdktf import)."""

from .resources import StackResources, read_stacks

__all__ = ["StackResources", "read_stacks"]
