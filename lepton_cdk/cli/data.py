"""`lepton data plan | sync | verify`: move a data set between local folders, S3 and Cloud Storage."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .options import number

app = typer.Typer(help="Migrate data between clouds: plan (priced), sync (verified, resumable), verify.",
                  no_args_is_help=True)


class Mode(StrEnum):
    """What a sync moves."""

    full = "full"
    incremental = "incremental"
    partial = "partial"


class Transcode(StrEnum):
    """Formats CSV tables can be converted to before transfer."""

    parquet = "parquet"


SrcArg = Annotated[str, typer.Argument(metavar="SRC", help="Source: a folder, file:///path, s3://bucket/prefix or gs://bucket/prefix.")]
DstArg = Annotated[str, typer.Argument(metavar="DST", help="Destination: a folder, file:///path, s3://bucket/prefix or gs://bucket/prefix.")]
ModeOpt = Annotated[Mode, typer.Option("--mode", help="full: copy every selected object (with --delete, remove what the source "
                                                      "lacks); incremental: only new or changed; partial: incremental over "
                                                      "--include/--exclude.")]
IncludeOpt = Annotated[list[str] | None, typer.Option("--include", metavar="GLOB", help="Glob over keys to select (repeatable); * stays in a "
                                                                        "folder, ** crosses folders, 'dir/' means all under dir.")]
ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", metavar="GLOB", help="Glob over keys to leave out (repeatable).")]
DeleteOpt = Annotated[bool, typer.Option("--delete", help="With --mode full: delete destination objects the source does not have.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
EndpointOpt = Annotated[str | None, typer.Option("--endpoint", metavar="URL", help="S3 endpoint URL (e.g. a local moto or MinIO). "
                                                                    "Default: AWS_ENDPOINT_URL, else AWS.")]
JournalOpt = Annotated[Path | None, typer.Option("--journal", help="Journal file for resume and incremental runs. Default: "
                                                                   "$XDG_STATE_HOME/lepton/sync/<hash of SRC and DST>.jsonl.")]
NoTraverseOpt = Annotated[bool, typer.Option("--no-traverse", help="Do not list the destination: trust the journal for "
                                                                      "objects it recorded unchanged, HEAD the rest. Faster when few "
                                                                      "objects change in a large destination; an object changed "
                                                                      "there by something else goes unnoticed until `lepton data "
                                                                      "verify`. Not with --delete.")]
MaxDeleteOpt = Annotated[str | None, typer.Option("--max-delete", metavar="N|N%", help="With --delete: the most destination "
                                                   "objects it may remove, a count or a share of the destination's objects. "
                                                   "Beyond it (or when the source lists nothing) the sync refuses and deletes "
                                                   "nothing. Default: 50%.")]
ChecksumOpt = Annotated[bool, typer.Option("--checksum", help="Decide what is unchanged by content hashes (read where the "
                                                              "stores keep none) instead of the journal's size and "
                                                              "modification time: a copy that rotted is copied again.")]
TranscodeOpt = Annotated[Transcode | None, typer.Option("--transcode", help="Convert *.csv to Parquet (zstd) before transfer, "
                                                                            "proving row count and content equal.")]


def _open(uri: str, endpoint: str | None, part_size_mib: int = 8, threshold_mib: int = 16, workers: int = 8):
    from lepton_cdk.data.stores import open_store

    store = open_store(uri, endpoint if uri.lower().startswith("s3://") else None, workers=workers)
    store.part_size = part_size_mib * 2**20
    store.multipart_threshold = threshold_mib * 2**20
    return store


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def _plan_text(doc: dict, limit: int = 10) -> str:
    lines = [f"plan ({doc['mode']}): {doc['source']['uri']} ({doc['source']['cloud']} {doc['source']['region']}) -> "
             f"{doc['destination']['uri']} ({doc['destination']['cloud']} {doc['destination']['region']})",
             f"  delete {doc['objects_to_delete']:>8,} objects  {_human(doc['bytes_to_delete']):>12}"
             + (f"  (--max-delete {doc['max_delete']})" if doc.get("max_delete") else "")]
    if doc.get("delete_refusal"):
        lines.append(f"  sync would refuse --delete: {doc['delete_refusal'].removeprefix('refusing --delete: ')}")
    lines += [f"  copy   {doc['objects_to_copy']:>8,} objects  {_human(doc['bytes_to_copy']):>12}",
              f"  skip   {doc['objects_unchanged']:>8,} objects  {_human(doc['bytes_unchanged']):>12}  "
              f"(unchanged{', by checksum' if doc.get('checksum') else ''})"]
    lines += _problem_lines(doc.get("unwritable", []), doc.get("skipped", []), limit)
    cost = doc["estimated_egress_usd"]
    shown = "unpriced" if cost is None else f"${cost:,.2f}" if cost >= 1 else f"${cost:.4f}"
    lines.append(f"  egress: {shown}  ({doc['egress_cost_detail']})")
    lines.append(f"  estimated time: {doc['estimated_seconds']:,.1f} s (assumes {doc['estimate_assumes']})")
    native = doc["native_transfer"]
    if native.get("construct"):
        verdict = "recommended" if native["recommended"] else "not needed"
        lines.append(f"  {native['construct']} ({native['service']}): {verdict}: {native['reason']}")
        lines.append(f"    settings: {json.dumps(native['settings'])}")
        if native.get("note"):
            lines.append(f"    note: {native['note']}")
    else:
        lines.append(f"  DataTransferJob: {native['reason']}")
    for item in doc["items"][:limit]:
        lines.append(f"  {item['action']:<6} {item['key']}{' -> ' + item['dest_key'] if item['dest_key'] != item['key'] else ''}"
                     f"  ({_human(item['bytes'])}, {item['reason']})")
    more = doc["objects_to_copy"] + doc["objects_to_delete"] - min(limit, len(doc["items"]))
    if more > 0:
        lines.append(f"  ... and {more:,} more (--json lists them)")
    return "\n".join(lines)


def _problem_lines(unwritable: list[dict], skipped: list[dict], limit: int) -> list[str]:
    """One line per object the destination cannot take and per entry a listing left out (the first ``limit`` of each)."""
    lines = []
    if unwritable:
        lines.append(f"  cannot write {len(unwritable):,} object(s) at the destination (reported failed, the rest is copied):")
        lines += [f"    {u['key']}: {u['reason']}" for u in unwritable[:limit]]
    if skipped:
        lines.append(f"  skipped {len(skipped):,} entr{'y' if len(skipped) == 1 else 'ies'} the listings left out (not copied, "
                     "not deleted):")
        lines += [f"    ({e['side']}) {e['key']}: {e['reason']}" for e in skipped[:limit]]
    for shown, every in ((unwritable, "unwritable"), (skipped, "skipped")):
        if len(shown) > limit:
            lines.append(f"    ... and {len(shown) - limit:,} more {every} (--json lists them)")
    return lines


def _stores(src: str, dst: str, endpoint, workers: int = 8, part_size_mib: int = 8, threshold_mib: int = 16):
    return (_open(src, endpoint, part_size_mib, threshold_mib, workers),
            _open(dst, endpoint, part_size_mib, threshold_mib, workers))


def _build(source, destination, mode: Mode, include, exclude, delete: bool, journal_path, transcode, workers: int = 8,
           no_traverse: bool = False, max_delete: str | None = None, checksum: bool = False):
    from lepton_cdk.data import Journal, build_plan, default_journal_path, parse_max_delete
    from lepton_cdk.progress import ProgressReporter

    limit = parse_max_delete(max_delete) if max_delete is not None else None
    journal = Journal(journal_path or default_journal_path(source.uri, destination.uri), source.uri, destination.uri)
    reporter = ProgressReporter()
    with reporter.stage("Listing source and destination"):
        plan = build_plan(source, destination, mode=mode.value, include=tuple(include or ()), exclude=tuple(exclude or ()),
                          delete=delete, transcode=transcode.value if transcode else None, journal=journal,
                          workers=workers, progress=reporter, no_traverse=no_traverse, max_delete=limit, checksum=checksum)
    return plan, journal


@app.command("plan")
def plan_command(
    src: SrcArg,
    dst: DstArg,
    mode: ModeOpt = Mode.incremental,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    delete: DeleteOpt = False,
    as_json: JsonOpt = False,
    endpoint: EndpointOpt = None,
    journal: JournalOpt = None,
    transcode: TranscodeOpt = None,
    no_traverse: NoTraverseOpt = False,
    max_delete: MaxDeleteOpt = None,
    checksum: ChecksumOpt = False,
    prices: Annotated[Path | None, typer.Option("--prices", help="A price catalog CSV instead of the shipped, dated one.")] = None,
) -> None:
    """List what a sync would delete (first), copy and skip, with the egress cost, the time and the DataTransferJob settings."""
    from lepton_cdk.data import plan_to_contract
    from lepton_cdk.review.prices import load_catalog

    source, destination = _stores(src, dst, endpoint)
    plan, _ = _build(source, destination, mode, include, exclude, delete, journal, transcode, no_traverse=no_traverse,
                     max_delete=max_delete, checksum=checksum)
    doc = plan_to_contract(plan, load_catalog(prices))
    typer.echo(json.dumps(doc, indent=2, ensure_ascii=False) if as_json else _plan_text(doc))


@app.command("sync")
def sync_command(
    src: SrcArg,
    dst: DstArg,
    mode: ModeOpt = Mode.incremental,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    delete: DeleteOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and move nothing.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, max=256, help="Objects copied in parallel.")] = 8,
    transcode: TranscodeOpt = None,
    no_traverse: NoTraverseOpt = False,
    journal: JournalOpt = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="Where to write the migration manifest. "
                                                                      "Default: beside the journal, <journal>.manifest.json.")] = None,
    part_size_mib: Annotated[int, typer.Option("--part-size-mib", min=5, max=5120, help="Multipart part size (memory per worker).")] = 8,
    multipart_threshold_mib: Annotated[int, typer.Option("--multipart-threshold-mib", min=5,
                                                         help="Objects this large or larger upload in parts.")] = 16,
    max_delete: MaxDeleteOpt = None,
    checksum: ChecksumOpt = False,
    lock_wait: Annotated[float, typer.Option("--lock-wait", metavar="SECONDS", parser=number(at_least=0),
                                             help="Wait this long for another sync to the same destination to finish "
                                                  "(default: fail at once, naming the lock).")] = 0.0,
    as_json: JsonOpt = False,
    endpoint: EndpointOpt = None,
) -> None:
    """Copy SRC to DST: streamed, parallel, verified at the destination, journaled for resume, with a migration manifest.

    One sync per destination runs at a time (a lock under the state folder); the plan is made and run under it.
    """
    from lepton_cdk.data import SyncIncompleteError, SyncOptions, plan_to_contract, run_sync
    from lepton_cdk.progress import TransferProgress

    source, destination = _stores(src, dst, endpoint, workers, part_size_mib, multipart_threshold_mib)
    build = dict(mode=mode, include=include, exclude=exclude, delete=delete, journal_path=journal, transcode=transcode,
                 workers=workers, no_traverse=no_traverse, max_delete=max_delete, checksum=checksum)
    if dry_run:
        plan, _ = _build(source, destination, **build)
        doc = plan_to_contract(plan)
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False) if as_json else _plan_text(doc))
        return
    with destination.exclusive(wait_s=lock_wait):  # the plan must describe the destination the run writes to
        plan, jour = _build(source, destination, **build)
        manifest_path = manifest or jour.path.with_suffix(".manifest.json")
        result = run_sync(plan, jour, SyncOptions(workers=workers, manifest_path=manifest_path, lock_wait_s=lock_wait),
                          TransferProgress(f"sync {plan.mode}"))
    summary = result.to_dict()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        typer.echo(f"{'ok' if result.ok else 'INCOMPLETE'}: {summary['objects_copied']:,} objects copied "
                   f"({summary['bytes_sent']:,} bytes sent, {summary['bytes_read']:,} read), "
                   f"{summary['objects_skipped']:,} unchanged or already done, {summary['objects_deleted']:,} deleted, "
                   f"{summary['retries']} retries, {summary['seconds']:.1f}s; verified by {', '.join(summary['verified_by']) or '-'}")
        for t in summary["transcoded"]:
            typer.echo(f"  transcoded {t['key']} -> {t['dest_key']}: {t['csv_bytes']:,} -> {t['parquet_bytes']:,} bytes, "
                       f"{t['rows']:,} rows, fingerprint {t['fingerprint'][:16]}.. equal")
        for key, error in result.failed:
            typer.echo(f"  failed {key}: {error}")
        for entry in summary["skipped"]:
            typer.echo(f"  skipped ({entry['side']}) {entry['key']}: {entry['reason']}")
        typer.echo(f"  manifest: {summary['manifest']}\n  journal: {summary['journal']}")
    if not result.ok:
        problems = [f"{k}: {e}" for k, e in (*result.changed_during_run, *result.failed)]
        fix = ("rename or --exclude the keys the destination cannot take, then re-run" if result.plan.unwritable
               else "re-run the same command to resume")
        raise SyncIncompleteError(f"{len(problems)} object(s) not copied ({'; '.join(problems[:3])}"
                                  f"{'; ...' if len(problems) > 3 else ''}); {fix}")


@app.command("verify")
def verify_command(
    src: SrcArg,
    dst: DstArg,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="Check both trees against this migration manifest "
                                                                      "instead of against each other.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=256, help="Objects checked in parallel.")] = 8,
    as_json: JsonOpt = False,
    endpoint: EndpointOpt = None,
) -> None:
    """Compare two trees (or both with a migration manifest) by size and hash; exit 1 listing every difference."""
    from lepton_cdk.data import VerifyError, verify_against_manifest, verify_trees

    source, destination = _open(src, endpoint, workers=workers), _open(dst, endpoint, workers=workers)
    if manifest is not None:
        report = verify_against_manifest(source, destination, manifest, workers=workers)
    else:
        report = verify_trees(source, destination, workers=workers)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        how = ", ".join(f"{n} by {k}" for k, n in sorted(report.compared_by.items()))
        typer.echo(f"{'ok' if report.ok else 'DIFFERENT'}: {report.checked:,} objects checked ({how or 'none compared'}), "
                   f"{len(report.differences)} differences")
        for key, problem in report.differences:
            typer.echo(f"  {key}: {problem}")
    if not report.ok:
        raise VerifyError(f"{len(report.differences)} difference(s) between {report.source} and {report.destination}")
