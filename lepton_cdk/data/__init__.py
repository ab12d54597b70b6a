"""The data migration engine: plan, sync, verify, with a journal and a migration manifest.

``build_plan`` lists both stores and decides what to copy, skip and delete
(modes full | incremental | partial, include/exclude globs);
deletions are guarded (``--max-delete``) and a run holds the destination's
lock; ``plan_to_contract`` turns it into the data-plan contract that ``lepton
review --data-plan`` prices; ``run_sync`` streams the copies in parallel,
verifies each at the destination, journals them for resume and writes the
migration manifest; ``verify_trees`` / ``verify_against_manifest`` compare
afterwards. Importing this package imports neither torch nor a cloud SDK.
"""

from __future__ import annotations

from .engine import SyncOptions, SyncResult, TransferProgress, run_sync
from .errors import SyncError, SyncIncompleteError, TranscodeError, VerifyError
from .filters import KeyFilter, glob_to_regex
from .journal import CopyRecord, Journal, default_journal_path
from .manifest import read_migration_manifest, write_migration_manifest
from .plan import (
    DEFAULT_MAX_DELETE,
    MODES,
    DeleteLimit,
    MigrationPlan,
    PlanItem,
    SkippedEntry,
    build_plan,
    native_transfer_recommendation,
    parse_max_delete,
    plan_to_contract,
)
from .transcode import TranscodeProof, csv_to_parquet, transcoded_key
from .verify import VerifyReport, verify_against_manifest, verify_trees

__all__ = [
    "DEFAULT_MAX_DELETE", "MODES", "CopyRecord", "DeleteLimit", "Journal", "KeyFilter", "MigrationPlan", "PlanItem",
    "SkippedEntry", "SyncError", "SyncIncompleteError", "SyncOptions", "SyncResult", "TranscodeError", "TranscodeProof",
    "TransferProgress", "VerifyError", "VerifyReport", "build_plan", "csv_to_parquet", "default_journal_path",
    "glob_to_regex", "native_transfer_recommendation", "parse_max_delete", "plan_to_contract",
    "read_migration_manifest", "run_sync", "transcoded_key", "verify_against_manifest", "verify_trees",
    "write_migration_manifest",
]
