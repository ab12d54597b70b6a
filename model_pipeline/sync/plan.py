"""What a sync will copy, skip and delete, priced from the catalog, before anything moves.

Modes (the same words the ``DataTransferJob`` constructs use):

* ``full``: copy every selected source object, whether or not the destination
  already holds it (DataSync's TransferMode ALL); with ``--delete``, remove
  destination objects the source does not have. Objects an interrupted full
  run already finished (per the journal) are not sent again.
* ``incremental``: copy only objects that are new or changed; an unchanged
  object is recognised from the journal of earlier runs, else by comparing
  checksums both stores already hold (sha256, crc32c, md5), else by hashing
  the local side; when no checksum is shared the object is copied.
* ``partial``: incremental over a subset named by ``--include``/``--exclude``.

``no_traverse`` (``--no-traverse``, like rclone's) does not list the
destination: an object whose source fingerprint matches the journal's record
is taken as unchanged without looking at its copy, and any other object is
looked up with one HEAD (or stat). It saves listing a large destination when
few objects change, at a price: an object changed or deleted at the
destination by something other than lepton goes unnoticed until
``lepton data verify`` compares the trees. ``--delete`` needs the listing and
refuses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lepton_cdk.contract.data_plan import DATA_PLAN_KIND, DATA_PLAN_SCHEMA_VERSION
from model_pipeline.storage import LocalStore, ObjectInfo, ObjectStore
from model_pipeline.storage.base import md5_from_etag

from .errors import SyncError
from .filters import KeyFilter, literal_prefix
from .journal import CopyRecord, Journal
from .transcode import TRANSCODE_FORMATS, transcoded_key

MODES = ("full", "incremental", "partial")
NATIVE_TRANSFER_THRESHOLD_BYTES = 1024**4  # 1 TiB: beyond one machine's day, the clouds' own services win
NATIVE_TRANSFER_THRESHOLD_OBJECTS = 1_000_000
ASSUMED_BYTES_PER_S = 100 * 1024**2  # a 1 Gbit/s-class link, for the time estimate
ASSUMED_SECONDS_PER_OBJECT = 0.03  # request round trips per object (list, put, verify)



@dataclass(frozen=True)
class PlanItem:
    """One decision: copy, skip or delete an object, and why."""

    action: str  # "copy", "skip" or "delete"
    key: str  # the source key (the destination key for deletes)
    dest_key: str
    size: int
    reason: str
    src: ObjectInfo | None = None
    dst: ObjectInfo | None = None
    record: CopyRecord | None = None  # what the journal knows of the destination copy, for the manifest


@dataclass
class MigrationPlan:
    """The decisions for one source/destination pair."""

    source: ObjectStore
    destination: ObjectStore
    mode: str
    key_filter: KeyFilter
    delete: bool
    transcode: str | None
    items: list[PlanItem] = field(default_factory=list)
    source_region: str = ""  # filled in by plan_to_contract: a sync that only copies never asks for it
    destination_region: str = ""
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def of(self, action: str) -> list[PlanItem]:
        """The items with ``action``."""
        return [i for i in self.items if i.action == action]

    def totals(self) -> dict[str, int]:
        """Counts and bytes per action."""
        out = {}
        for action in ("copy", "skip", "delete"):
            items = self.of(action)
            out[f"objects_{action}"] = len(items)
            out[f"bytes_{action}"] = sum(i.size for i in items)
        return out


def _md5_of(info: ObjectInfo) -> str | None:
    """base64 md5: GCS reports it; an S3 single-part ETag is its hex."""
    if info.md5:
        return info.md5
    return md5_from_etag(info.etag)


def _dest_matches(rec: CopyRecord, d: ObjectInfo) -> bool:
    if d.size != rec.dest_bytes:
        return False
    if d.etag and rec.dest_etag:
        return d.etag == rec.dest_etag
    if d.version and rec.dest_version:
        return d.version == rec.dest_version
    return False


def _same_by_checksum(s: ObjectInfo, d: ObjectInfo) -> bool | None:
    """True/False when the two share a checksum, None when they share none."""
    for a, b in ((s.sha256, d.sha256), (s.crc32c, d.crc32c), (_md5_of(s), _md5_of(d))):
        if a and b:
            return a == b
    return None


def _with_checksums(store: ObjectStore, info: ObjectInfo) -> ObjectInfo:
    """``info`` with the checksums a cheap extra look gives: a HEAD for clouds, hashing for a local file."""
    if info.sha256:
        return info
    if isinstance(store, LocalStore):
        d = store.read_digest(info)
        return ObjectInfo(info.key, info.size, info.etag, info.version, d.sha256, d.crc32c, info.md5)
    head = store.head(info.key)
    if head is None:
        return info
    return ObjectInfo(info.key, info.size, info.etag or head.etag, info.version or head.version, head.sha256,
                      info.crc32c or head.crc32c, info.md5 or head.md5)


def build_plan(source: ObjectStore, destination: ObjectStore, *, mode: str = "incremental",
               include: tuple[str, ...] = (), exclude: tuple[str, ...] = (), delete: bool = False,
               transcode: str | None = None, journal: Journal | None = None, workers: int = 8,
               progress: Callable[[str], None] | None = None, no_traverse: bool = False) -> MigrationPlan:
    """List both sides (only the source with ``no_traverse``) and decide, object by object, what the sync will do."""
    if mode not in MODES:
        raise SyncError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if delete and mode != "full":
        raise SyncError(f"--delete needs --mode full (--mode {mode} never removes destination objects)")
    if delete and no_traverse:
        raise SyncError("--delete needs the destination listing that --no-traverse skips; drop one of the two")
    if mode == "partial" and not (include or exclude):
        raise SyncError("--mode partial needs at least one --include or --exclude glob naming the subset")
    if transcode is not None and transcode not in TRANSCODE_FORMATS:
        raise SyncError(f"--transcode {transcode!r} is not supported; use {', '.join(TRANSCODE_FORMATS)}")
    if source.uri.rstrip("/") == destination.uri.rstrip("/"):
        raise SyncError(f"source and destination are the same location ({source.uri}); give two different ones")
    key_filter = KeyFilter(tuple(include), tuple(exclude))
    key_filter.validate()
    source.check()
    destination.check(for_write=True)
    plan = MigrationPlan(source, destination, mode, key_filter, delete, transcode)
    src_objects = [o for o in source.list() if key_filter.selects(o.key)]
    records = journal.records if journal else {}
    unfinished = journal.unfinished if journal else {}
    if no_traverse:
        trusted = _trust_journal(src_objects, destination, records, transcode, workers)
        dst_objects = {d.key: d for d in trusted.values() if d is not None}
    else:
        dst_objects = {o.key: o for o in destination.list()}
    if progress:
        progress(f"listed {len(src_objects):,} source objects, " + (
            f"looked up {len(dst_objects):,} destination objects (--no-traverse)" if no_traverse
            else f"listed {len(dst_objects):,} destination objects"))
    items: list[PlanItem] = []
    undecided: list[tuple[ObjectInfo, ObjectInfo, str]] = []
    produced = set()
    for s in src_objects:
        dest_key = transcoded_key(s.key, transcode)
        produced.add(dest_key)
        if no_traverse and s.key in trusted and trusted[s.key] is None:
            rec = records[s.key]  # the journal vouches for the copy: no listing, no HEAD
            if mode == "full" and not (s.key in unfinished and unfinished[s.key] == rec):
                items.append(PlanItem("copy", s.key, dest_key, s.size, "full copy", s, None))
            else:
                reason = "finished by the interrupted run" if mode == "full" else "unchanged (journal, --no-traverse)"
                items.append(PlanItem("skip", s.key, dest_key, s.size, reason, s, None, rec))
            continue
        d = dst_objects.get(dest_key)
        rec = records.get(s.key)
        rec_ok = d is not None and _journal_vouches(rec, s, dest_key) and _dest_matches(rec, d)
        if mode == "full":
            if rec_ok and s.key in unfinished and unfinished[s.key] == rec:
                items.append(PlanItem("skip", s.key, dest_key, s.size, "finished by the interrupted run", s, d, rec))
            else:
                items.append(PlanItem("copy", s.key, dest_key, s.size, "new" if d is None else "full copy", s, d))
        elif d is None:
            items.append(PlanItem("copy", s.key, dest_key, s.size, "new", s, None))
        elif rec_ok:
            items.append(PlanItem("skip", s.key, dest_key, s.size, "unchanged", s, d, rec))
        elif dest_key != s.key:
            items.append(PlanItem("copy", s.key, dest_key, s.size, "changed (no record of its transcoded copy)", s, d))
        elif s.size != d.size:
            items.append(PlanItem("copy", s.key, dest_key, s.size, "changed (size)", s, d))
        else:
            same = _same_by_checksum(s, d)
            if same is None:
                undecided.append((s, d, dest_key))
            else:
                items.append(PlanItem("skip" if same else "copy", s.key, dest_key, s.size,
                                      "unchanged" if same else "changed (checksum)", s, d))
    if undecided:
        def look(pair):
            s, d, dest_key = pair
            s2, d2 = _with_checksums(source, s), _with_checksums(destination, d)
            same = _same_by_checksum(s2, d2)
            if same:
                return PlanItem("skip", s.key, dest_key, s.size, "unchanged", s2, d2)
            return PlanItem("copy", s.key, dest_key, s.size, "changed (checksum)" if same is False else "no shared checksum", s, d)

        with ThreadPoolExecutor(max(1, workers)) as pool:
            items.extend(pool.map(look, undecided))
    if delete:
        for key, d in sorted(dst_objects.items()):
            if key not in produced and key_filter.selects(key):
                items.append(PlanItem("delete", key, key, d.size, "not in the source", None, d))
    order = {"copy": 0, "skip": 1, "delete": 2}
    items.sort(key=lambda i: (order[i.action], -i.size if i.action == "copy" else 0, i.key))
    plan.items = items
    return plan


def _journal_vouches(rec: CopyRecord | None, s: ObjectInfo, dest_key: str) -> bool:
    """The journal recorded a verified copy of exactly this source version under ``dest_key``."""
    return rec is not None and rec.dest_key == dest_key and rec.source_fingerprint == s.fingerprint \
        and bool(rec.transcoded) == (dest_key != s.key)


def _trust_journal(src_objects: list[ObjectInfo], destination: ObjectStore, records: dict[str, CopyRecord],
                   transcode: str | None, workers: int) -> dict[str, ObjectInfo | None]:
    """For ``--no-traverse``: source keys the journal vouches for map to None; the others to a HEAD of their copy.

    Only keys present in the returned dict are decided here; a HEAD that finds
    nothing leaves the key out, so the caller sees the object as new.
    """
    trusted: dict[str, ObjectInfo | None] = {}
    lookups = []
    for s in src_objects:
        dest_key = transcoded_key(s.key, transcode)
        if _journal_vouches(records.get(s.key), s, dest_key):
            trusted[s.key] = None
        else:
            lookups.append((s.key, dest_key))
    if lookups:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for (key, _), head in zip(lookups, pool.map(lambda pair: destination.head(pair[1]), lookups), strict=True):
                if head is not None:
                    trusted[key] = head
    return trusted


def _bucket_and_prefix(store: ObjectStore) -> tuple[str, str]:
    return getattr(store, "bucket", None) or getattr(store, "bucket_name", ""), getattr(store, "prefix", "")


def native_transfer_recommendation(plan: MigrationPlan) -> dict:
    """Whether to hand this migration to the clouds' own transfer service, and the construct settings to use."""
    totals = plan.totals()
    src, dst = plan.source, plan.destination
    big = totals["bytes_copy"] >= NATIVE_TRANSFER_THRESHOLD_BYTES or totals["objects_copy"] >= NATIVE_TRANSFER_THRESHOLD_OBJECTS
    rec: dict = {"recommended": False, "threshold_bytes": NATIVE_TRANSFER_THRESHOLD_BYTES,
                 "threshold_objects": NATIVE_TRANSFER_THRESHOLD_OBJECTS}
    if src.cloud == "local" or dst.cloud == "local" or src.cloud == dst.cloud:
        rec["reason"] = "the cloud-native transfer services copy between the two clouds' buckets only; use `lepton data sync`"
        return rec
    include = [literal_prefix(p) for p in plan.key_filter.include]
    exclude = [literal_prefix(p) for p in plan.key_filter.exclude]
    exact = all(literal_prefix(p) + "**" == p or p.endswith("/") for p in (*plan.key_filter.include, *plan.key_filter.exclude))
    src_bucket, src_prefix = _bucket_and_prefix(src)
    dst_bucket, dst_prefix = _bucket_and_prefix(dst)
    settings = {"source_bucket_name": src_bucket, "source_prefix": src_prefix, "destination": dst_bucket,
                "destination_prefix": dst_prefix, "mode": plan.mode, "include_prefixes": include,
                "exclude_prefixes": exclude, "delete_unique_in_sink": plan.delete, "schedule": None}
    if dst.cloud == "aws":
        construct = "lepton_cdk.aws.DataTransferJob"
        service = "AWS DataSync"
        settings.update({"hmac_secret_id": "<Secrets Manager secret with the GCS HMAC key>", "agent_arns": ["<DataSync agent ARN>"]})
    else:
        construct = "lepton_cdk.gcp.DataTransferJob"
        service = "Storage Transfer Service"
        settings.update({"source_role_arn": "<IAM role ARN the transfer service assumes to read S3>"})
    rec.update({"recommended": big, "construct": construct, "service": service, "settings": settings,
                "reason": (f"{totals['bytes_copy']:,} bytes / {totals['objects_copy']:,} objects is above the threshold: "
                           f"let {service} move it (pass the settings to {construct}, `destination` is the bucket construct)")
                if big else "below the threshold: `lepton data sync` on one machine is simpler"})
    if not exact:
        rec["note"] = "the transfer services filter by prefix only; the globs were cut at their first wildcard"
    if plan.transcode:
        rec["note"] = (rec.get("note", "") + "; " if rec.get("note") else "") + "the transfer services cannot transcode"
    return rec


def plan_to_contract(plan: MigrationPlan, catalog=None, *, item_limit: int | None = 1000) -> dict:
    """The data-plan contract document (``lepton review --data-plan`` reads it), with the engine's extras."""
    from lepton_cdk.review.costs import transfer_cost
    from lepton_cdk.review.prices import load_catalog, pricing_region

    catalog = catalog or load_catalog()
    totals = plan.totals()
    src, dst = plan.source, plan.destination
    plan.source_region = plan.source_region or src.region()
    plan.destination_region = plan.destination_region or dst.region()
    # named as priced: a GCS multi-region (us, eu, ...) as a region of its continent
    cost = transfer_cost(src.cloud, pricing_region(src.cloud, plan.source_region), dst.cloud,
                         pricing_region(dst.cloud, plan.destination_region), totals["bytes_copy"], catalog)
    seconds = totals["bytes_copy"] / ASSUMED_BYTES_PER_S + totals["objects_copy"] * ASSUMED_SECONDS_PER_OBJECT / 8
    items = [{"action": i.action, "key": i.key, "dest_key": i.dest_key, "bytes": i.size, "reason": i.reason}
             for i in plan.items if i.action != "skip"]
    doc = {
        "schema_version": DATA_PLAN_SCHEMA_VERSION,
        "kind": DATA_PLAN_KIND,
        "mode": plan.mode,
        "created": plan.created,
        "source": {"cloud": src.cloud, "region": plan.source_region, "uri": src.uri},
        "destination": {"cloud": dst.cloud, "region": plan.destination_region, "uri": dst.uri},
        "objects_to_copy": totals["objects_copy"], "bytes_to_copy": totals["bytes_copy"],
        "objects_to_delete": totals["objects_delete"], "bytes_to_delete": totals["bytes_delete"],
        "objects_unchanged": totals["objects_skip"], "bytes_unchanged": totals["bytes_skip"],
        "include": list(plan.key_filter.include), "exclude": list(plan.key_filter.exclude), "delete": plan.delete,
        "transcode": plan.transcode,
        "estimated_egress_usd": None if cost.total_usd is None else round(cost.total_usd, 4),
        "egress_cost_detail": cost.inputs + (f" ({cost.reason})" if cost.reason else ""),
        "estimated_seconds": round(seconds, 1),
        "estimate_assumes": f"{ASSUMED_BYTES_PER_S / 1024**2:.0f} MiB/s and {ASSUMED_SECONDS_PER_OBJECT * 1000:.0f} ms per object over 8 workers",
        "native_transfer": native_transfer_recommendation(plan),
        "items": items if item_limit is None else items[:item_limit],
        "items_truncated": item_limit is not None and len(items) > item_limit,
    }
    return doc
