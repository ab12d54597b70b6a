"""The final incremental data sync of a cutover: what it will move (``lepton data plan``) and running it (``lepton data sync``).

It uses the same default journal as ``lepton data sync SRC DST``, so the
final run copies only what changed since the bulk migration.
"""

from __future__ import annotations

from typing import Any

from .plan import DataSync


def _stores(spec: DataSync):
    from lepton_cdk.data import Journal, default_journal_path
    from lepton_cdk.data.stores import open_store

    def store(uri: str):
        return open_store(uri, spec.endpoint if uri.lower().startswith("s3://") else None)

    source, destination = store(spec.src), store(spec.dst)
    journal = Journal(default_journal_path(source.uri, destination.uri), source.uri, destination.uri)
    return source, destination, journal


def plan_data_sync(spec: DataSync) -> dict[str, Any]:
    """The data-plan contract of the final sync (what ``lepton data plan SRC DST --mode incremental --json`` prints)."""
    from lepton_cdk.data import build_plan, plan_to_contract

    source, destination, journal = _stores(spec)
    return plan_to_contract(build_plan(source, destination, mode="incremental", journal=journal))


def run_data_sync(spec: DataSync) -> dict[str, Any]:
    """Run the final incremental sync (verified, journaled); returns its summary. Raises the data engine's one-line errors."""
    from lepton_cdk.data import SyncIncompleteError, SyncOptions, build_plan, run_sync

    source, destination, journal = _stores(spec)
    with destination.exclusive():  # the plan must describe the destination the run writes to
        plan = build_plan(source, destination, mode="incremental", journal=journal)
        result = run_sync(plan, journal, SyncOptions(manifest_path=journal.path.with_suffix(".manifest.json")))
    summary = result.to_dict()
    if not result.ok:
        problems = [f"{k}: {e}" for k, e in (*result.changed_during_run, *result.failed)]
        raise SyncIncompleteError(f"{len(problems)} object(s) not copied ({'; '.join(problems[:3])}); re-run to resume")
    return {"ok": True, "src": spec.src, "dst": spec.dst, "mode": "incremental",
            **{k: summary[k] for k in ("objects_copied", "objects_skipped", "bytes_sent", "seconds") if k in summary}}
