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

``checksum`` (``--checksum``, like rclone's) decides "unchanged" in
incremental and partial modes by content hashes, not by the journal's record
of size and modification time: both sides are hashed with the checksums the
stores computed themselves, else by reading (as ``lepton data verify``
does), so a copy that rotted with its mtime unchanged is copied again.

Safety (the plan refuses or reports, it never guesses):

* A destination inside the source, or the reverse, is refused (local folders
  by their resolved paths, buckets by bucket and prefix).
* Entries a listing leaves out (links, special files, unreadable folders) are
  reported in ``MigrationPlan.skipped``, never dropped silently.
* Keys the destination cannot hold (a local folder cannot take ``a/../b``,
  ``a//b``, ``a/``, nor both ``a`` and ``a/b``; two source keys transcoding to
  one destination key) go to ``MigrationPlan.unwritable`` with the reason;
  the sync reports them failed and copies the rest.
* ``--delete`` is guarded like rclone's ``--max-delete``: the sync refuses,
  deleting nothing, when the source lists no objects or when the plan would
  delete more than ``max_delete`` (default 50% of the destination's objects),
  unless the user raises the limit (:func:`parse_max_delete`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lepton_cdk.contract.data_plan import DATA_PLAN_KIND, DATA_PLAN_SCHEMA_VERSION
from lepton_cdk.data.stores import LocalStore, ObjectInfo, ObjectStore
from lepton_cdk.data.stores.base import md5_from_etag

from .errors import SyncError
from .filters import KeyFilter, literal_prefix
from .journal import CopyRecord, Journal
from .transcode import TRANSCODE_FORMATS, require_transcoder, transcoded_key
from .verify import content_matches, matches_recorded

MODES = ("full", "incremental", "partial")
NATIVE_TRANSFER_THRESHOLD_BYTES = 1024**4  # 1 TiB: beyond one machine's day, the clouds' own services win
NATIVE_TRANSFER_THRESHOLD_OBJECTS = 1_000_000
ASSUMED_BYTES_PER_S = 100 * 1024**2  # a 1 Gbit/s-class link, for the time estimate
ASSUMED_SECONDS_PER_OBJECT = 0.03  # request round trips per object (list, put, verify)



@dataclass(frozen=True)
class DeleteLimit:
    """How many destination objects ``--delete`` may remove: a count, or a share of the destination's objects."""

    count: int | None = None
    share: float | None = None  # 0.0 to 1.0
    explicit: bool = False  # given by the user (an empty source is then allowed to empty the destination)

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{(self.share or 0) * 100:g}%"


DEFAULT_MAX_DELETE = DeleteLimit(share=0.5)


def parse_max_delete(text: str) -> DeleteLimit:
    """``--max-delete``: ``N`` objects or ``N%`` of the destination's objects (0-100)."""
    value = text.strip()
    try:
        if value.endswith("%"):
            share = float(value[:-1])
            if not 0 <= share <= 100:
                raise ValueError(value)
            return DeleteLimit(share=share / 100, explicit=True)
        count = int(value)
        if count < 0:
            raise ValueError(value)
        return DeleteLimit(count=count, explicit=True)
    except ValueError:
        raise SyncError(f"--max-delete {text!r}: give a number of objects (e.g. 100) or a share of the destination's "
                        "objects from 0% to 100% (e.g. 50%)") from None


@dataclass(frozen=True)
class SkippedEntry:
    """An entry a listing left out (a link, a special file, an unreadable folder), on which side and why."""

    side: str  # "source" or "destination"
    key: str
    reason: str


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
    skipped: list[SkippedEntry] = field(default_factory=list)
    unwritable: list[tuple[str, str]] = field(default_factory=list)  # (source key, why the destination cannot take it)
    source_objects: int = 0  # selected source objects listed
    destination_objects: int | None = None  # objects listed at the destination (None with no_traverse)
    max_delete: DeleteLimit = DEFAULT_MAX_DELETE
    checksum: bool = False
    source_region: str = ""  # filled in by plan_to_contract: a sync that only copies never asks for it
    destination_region: str = ""
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def of(self, action: str) -> list[PlanItem]:
        """The items with ``action``."""
        return [i for i in self.items if i.action == action]

    def delete_refusal(self) -> str | None:
        """Why the sync must not run this plan's deletions (one line naming the numbers and the flag), or None."""
        n = len(self.of("delete"))
        if not n:
            return None
        total = self.destination_objects or n
        limit = self.max_delete
        where = self.destination.uri
        if self.source_objects == 0 and not limit.explicit:
            selected = " selected by the filters" if (self.key_filter.include or self.key_filter.exclude) else ""
            return (f"refusing --delete: the source {self.source.uri} lists no objects{selected}, so all {n} objects at "
                    f"{where} would be deleted; check SRC (a typo lists nothing), or pass --max-delete {n} to delete them")
        if limit.count is not None and n > limit.count:
            return (f"refusing --delete: it would delete {n} of the {total} objects at {where}, more than --max-delete "
                    f"{limit.count}; check SRC and the filters with `lepton data plan`, or raise the limit (--max-delete {n})")
        if limit.share is not None and n > limit.share * total:
            need = math.ceil(100 * n / total)
            return (f"refusing --delete: it would delete {n} of the {total} objects at {where} ({100 * n / total:.0f}%), "
                    f"more than --max-delete {limit} allows; check SRC and the filters with `lepton data plan`, or raise "
                    f"the limit (--max-delete {need}%)")
        return None

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
               progress: Callable[[str], None] | None = None, no_traverse: bool = False,
               max_delete: DeleteLimit | None = None, checksum: bool = False) -> MigrationPlan:
    """List both sides (only the source with ``no_traverse``) and decide, object by object, what the sync will do."""
    if mode not in MODES:
        raise SyncError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if delete and mode != "full":
        raise SyncError(f"--delete needs --mode full (--mode {mode} never removes destination objects)")
    if delete and no_traverse:
        raise SyncError("--delete needs the destination listing that --no-traverse skips; drop one of the two")
    if checksum and no_traverse:
        raise SyncError("--checksum hashes every destination copy and --no-traverse looks at none; drop one of the two")
    if max_delete is not None and not delete:
        raise SyncError("--max-delete limits what --delete removes; add --delete or drop --max-delete")
    if mode == "partial" and not (include or exclude):
        raise SyncError("--mode partial needs at least one --include or --exclude glob naming the subset")
    if transcode is not None and transcode not in TRANSCODE_FORMATS:
        raise SyncError(f"--transcode {transcode!r} is not supported; use {', '.join(TRANSCODE_FORMATS)}")
    if transcode is not None:
        require_transcoder()  # before listing or copying anything, not at the first CSV
    _refuse_overlap(source, destination)
    key_filter = KeyFilter(tuple(include), tuple(exclude))
    key_filter.validate()
    source.check()
    destination.check(for_write=True)
    plan = MigrationPlan(source, destination, mode, key_filter, delete, transcode,
                         max_delete=max_delete or DEFAULT_MAX_DELETE, checksum=checksum)

    def skipper(side: str) -> Callable[[str, str], None]:
        def on_skip(key: str, reason: str) -> None:
            # an unreadable folder may hold selected keys whatever the filters say: always reported
            if key.endswith("/") or not key or key_filter.selects(key):
                plan.skipped.append(SkippedEntry(side, key, reason))
        return on_skip

    src_objects = [o for o in source.list(on_skip=skipper("source")) if key_filter.selects(o.key)]
    plan.source_objects = len(src_objects)
    records = journal.records if journal else {}
    unfinished = journal.unfinished if journal else {}
    if no_traverse:
        trusted = _trust_journal(src_objects, destination, records, transcode, workers)
        dst_objects = {d.key: d for d in trusted.values() if d is not None}
    else:
        dst_objects = {o.key: o for o in destination.list(on_skip=skipper("destination"))}
        plan.destination_objects = len(dst_objects)
    if progress:
        progress(f"listed {len(src_objects):,} source objects, " + (
            f"looked up {len(dst_objects):,} destination objects (--no-traverse)" if no_traverse
            else f"listed {len(dst_objects):,} destination objects"))
    blocked = {e.key.rstrip("/"): e.reason.split(";")[0] for e in plan.skipped if e.side == "destination"}
    plan.unwritable = _unwritable(src_objects, dst_objects, destination, transcode, blocked)
    refused = {key for key, _ in plan.unwritable}
    items: list[PlanItem] = []
    undecided: list[tuple[ObjectInfo, ObjectInfo, str]] = []
    by_content: list[tuple[ObjectInfo, ObjectInfo, str, CopyRecord | None]] = []
    produced = set()
    for s in src_objects:
        dest_key = transcoded_key(s.key, transcode)
        produced.add(dest_key)
        if s.key in refused:
            continue
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
        elif checksum:
            if dest_key == s.key and s.size != d.size:
                items.append(PlanItem("copy", s.key, dest_key, s.size, "changed (size)", s, d))
            elif dest_key != s.key and not (rec is not None and rec.transcoded and rec.dest_key == dest_key):
                items.append(PlanItem("copy", s.key, dest_key, s.size, "changed (no record of its transcoded copy)", s, d))
            else:
                by_content.append((s, d, dest_key, rec if rec_ok else None))
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
    if by_content:
        def compare(job):
            s, d, dest_key, rec = job
            return _compare_content(source, destination, s, d, dest_key, rec, records.get(s.key))

        with ThreadPoolExecutor(max(1, workers)) as pool:
            items.extend(pool.map(compare, by_content))
    if delete:
        for key, d in sorted(dst_objects.items()):
            if key not in produced and key_filter.selects(key):
                items.append(PlanItem("delete", key, key, d.size, "not in the source", None, d))
    order = {"delete": 0, "copy": 1, "skip": 2}  # deletions first: what a plan must show before anything else
    items.sort(key=lambda i: (order[i.action], -i.size if i.action == "copy" else 0, i.key))
    plan.items = items
    return plan


def _compare_content(source: ObjectStore, destination: ObjectStore, s: ObjectInfo, d: ObjectInfo, dest_key: str,
                     vouching: CopyRecord | None, rec: CopyRecord | None) -> PlanItem:
    """``--checksum``: skip only when the content hashes say the destination holds the source's bytes."""
    if dest_key != s.key:  # a transcoded copy: each side against the checksums the journal recorded for it
        t = rec.transcoded or {}
        same = bool(matches_recorded(source, s, {"sha256": rec.sha256, "crc32c": rec.crc32c})) and bool(
            matches_recorded(destination, d, {"sha256": t.get("dest_sha256", ""), "crc32c": t.get("dest_crc32c", "")}))
        if same:
            return PlanItem("skip", s.key, dest_key, s.size, "unchanged (checksum)", s, d, rec)
        return PlanItem("copy", s.key, dest_key, s.size, "changed (checksum)", s, d)
    same, _, a, b = content_matches(source, s, destination, d)
    if not same:
        return PlanItem("copy", s.key, dest_key, s.size, "changed (checksum)", s, d)
    # the manifest line: the journal's record when it still describes this pair, else the checksums just compared
    s2 = ObjectInfo(s.key, s.size, s.etag, s.version, a.get("sha256") or s.sha256, a.get("crc32c") or s.crc32c, s.md5)
    d2 = ObjectInfo(d.key, d.size, d.etag, d.version, b.get("sha256") or d.sha256, b.get("crc32c") or d.crc32c, d.md5)
    return PlanItem("skip", s.key, dest_key, s.size, "unchanged (checksum)", s2, d2, vouching)


def _refuse_overlap(source: ObjectStore, destination: ObjectStore) -> None:
    """A destination inside the source (or the reverse) would copy its own output, and ``--delete`` eat the source."""
    (src_space, src_path), (dst_space, dst_path) = source.location(), destination.location()
    if source.uri.rstrip("/") == destination.uri.rstrip("/") or (src_space, src_path) == (dst_space, dst_path):
        raise SyncError(f"source and destination are the same location ({source.uri}); give two different ones")
    if src_space != dst_space:
        return
    if dst_path.startswith(src_path):
        raise SyncError(f"the destination {destination.uri} is inside the source {source.uri}: a sync would copy its own "
                        "output; give a destination outside the source")
    if src_path.startswith(dst_path):
        raise SyncError(f"the source {source.uri} is inside the destination {destination.uri}: a sync would write over "
                        "(and --delete remove) its own input; give a source outside the destination")


def _folders(key: str) -> list[str]:
    """The folder keys above ``key``: 'a/b/c' -> ['a', 'a/b']."""
    parts = key.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _unwritable(src_objects: list[ObjectInfo], dst_objects: dict[str, ObjectInfo], destination: ObjectStore,
                transcode: str | None, blocked: dict[str, str]) -> list[tuple[str, str]]:
    """Source objects the destination cannot take as planned, with the one-line reason; the rest are copied.

    ``blocked``: entries the destination's listing left out (a link, a special file), by key, with what they are.
    """
    out: dict[str, str] = {}
    targets: dict[str, list[str]] = {}
    for s in src_objects:
        targets.setdefault(transcoded_key(s.key, transcode), []).append(s.key)
    for dest_key, keys in targets.items():
        if len(keys) > 1:  # only transcoding maps two keys to one: the converted one gives way
            for key in keys:
                if key != dest_key:
                    out[key] = (f"{key!r} would be written as {dest_key!r}, which the source also holds; rename one or "
                                "leave it out with --exclude")
    if destination.keys_are_paths:
        wanted: dict[str, str] = {}  # destination key -> the source key still headed there
        for dest_key, keys in targets.items():
            remaining = [k for k in keys if k not in out]
            if not remaining:
                continue
            problem = destination.key_problem(dest_key)
            if problem is not None:
                out[remaining[0]] = problem
            else:
                wanted[dest_key] = remaining[0]
        below: dict[str, str] = {}  # folder key -> one key that needs it to be a folder
        for key in sorted([*wanted, *dst_objects]):
            for folder in _folders(key):
                below.setdefault(folder, key)
        for dest_key, key in wanted.items():
            problem = None
            if dest_key in below:
                problem = (f"key {dest_key!r} cannot be a file in {destination.uri}: {below[dest_key]!r} needs "
                           f"{dest_key!r} to be a folder, and a local folder cannot be both; rename one at the source or "
                           "leave it out with --exclude")
            if problem is None:
                blocking = next((f for f in _folders(dest_key) if f in dst_objects), None)
                if blocking is not None:
                    problem = (f"cannot write {dest_key!r} in {destination.uri}: {blocking!r} there is a file, so it cannot "
                               "also be a folder; move it or leave the key out with --exclude")
            if problem is None:
                link = next((f for f in _folders(dest_key) if f in blocked), None)
                if link is not None:  # a link (or special file) where a folder must be: never written through
                    problem = (f"cannot write {dest_key!r} in {destination.uri}: {link!r} there is {blocked[link]} and "
                               "lepton writes nothing through it (it could lead outside the folder); replace it with a "
                               "folder or leave the key out with --exclude")
            if problem is not None:
                out[key] = problem
    return sorted(out.items())


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
        "max_delete": str(plan.max_delete) if plan.delete else None,
        "delete_refusal": plan.delete_refusal(),
        "checksum": plan.checksum,
        "skipped": [{"side": e.side, "key": e.key, "reason": e.reason} for e in plan.skipped],
        "unwritable": [{"key": k, "reason": r} for k, r in plan.unwritable],
    }
    return doc
