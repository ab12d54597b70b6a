"""What both clouds' ``GpuNodeGroup`` share: the defaults that must agree. Standard library only.

Kept here so the AWS auto scaling group and the GCP managed instance group
cannot drift apart on them again (they once waited 300 s and 900 s).
"""

from __future__ import annotations

DEFAULT_HEALTH_CHECK_GRACE_PERIOD_SEC = 900
"""Seconds after a node boots before a failing health check may replace it, on both clouds.

The first boot downloads and verifies the model and pulls the multi-GB
Triton image, which takes minutes; a shorter wait replaces nodes that are
still booting, over and over.
"""

DEFAULT_DISK_SIZE_GIB = 100
"""The nodes' boot disk: room for the GPU image (the AWS Deep Learning AMI's snapshot is 75 GiB), Triton and the model."""

DEFAULT_NODE_COUNT = 1
"""Nodes that run when nothing else is said."""
