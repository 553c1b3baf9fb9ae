"""What storage refuses before it stores anything, and how long staged blobs may wait."""
from dataclasses import dataclass


@dataclass(frozen=True)
class StorageLimits:
    """A free-disk floor (files backend), a per-tenant quota (0: none), the staging sweep age."""

    min_free_bytes: int = 0
    tenant_quota_bytes: int = 0
    staging_max_age: float = 3600.0
